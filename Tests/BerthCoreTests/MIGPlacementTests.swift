import BerthTestSupport
import Testing

@testable import BerthCore

@Suite struct MIGPlacementTests {
    static let table = GPUModelTable.builtIn
    static let a100 = table.model(named: "A100-40GB")!
    static let h100 = table.model(named: "H100-80GB")!
    static let a30 = table.model(named: "A30-24GB")!
    static let v100 = table.model(named: "V100-32GB")!

    static func p(_ name: String, _ model: GPUModel = a100) -> MIGProfile { model.profile(named: name)! }

    static func mask(_ slots: [Int]) -> UInt16 { slots.reduce(0) { $0 | (1 << UInt16($1)) } }

    static func slots(_ name: String, _ model: GPUModel = a100, _ occupancy: GPUOccupancy) -> [Int] {
        MIGPlacement.candidateSlots(p(name, model), on: model, occupancy: occupancy)
    }

    static func gpu(_ host: String, _ index: Int = 0, _ model: GPUModel = a100, used: [Int] = []) -> GPUCandidate {
        GPUCandidate(host: host, gpuIndex: index, model: model, occupancy: GPUOccupancy(usedMask: mask(used)))
    }

    static func iv(_ s: Int64, _ e: Int64) -> Interval { Interval(start: s, end: e) }

    // MARK: - Geometry

    @Test func sevenOneGFitOnOneA100AndAnEighthDoesNot() throws {
        var pool = GPUPool([Self.gpu("h1")])
        let r1 = pool.place(profile: "1g.5gb", count: 7)
        let seven = try #require(r1)
        #expect(Set(seven.map(\.slot)) == Set(0...6))
        #expect(pool.gpus[0].occupancy.usedMask == Self.mask(Array(0...6)))
        let r2 = pool.place(profile: "1g.5gb", count: 1)
        #expect(r2 == nil)
        #expect(pool.candidateSlots(profile: "1g.5gb", host: "h1", gpu: 0) == [])
        #expect(MIGPlacement.choose(profile: "1g.5gb", count: 8, candidates: [Self.gpu("h1")]) == nil)
        #expect(
            MIGPlacement.choose(profile: "1g.5gb", count: 8, candidates: [Self.gpu("h1")], policy: .firstFit) == nil)
        #expect(MIGPlacement.capacity(Self.p("1g.5gb"), on: Self.a100, occupancy: .empty) == 7)
    }

    @Test func threeGIsRefusedWhenSlotsOneAndFiveAreTaken() {
        let occ = GPUOccupancy(usedMask: Self.mask([1, 5]))
        #expect(Self.slots("1g.5gb", Self.a100, occ) == [0, 2, 3, 4, 6])  // five free 1g slots...
        #expect(occ.freeSlices(on: Self.a100) == 6)
        #expect(Self.slots("3g.20gb", Self.a100, occ) == [])  // ...and no 3g
        #expect(Self.slots("4g.20gb", Self.a100, occ) == [])
        #expect(Self.slots("2g.10gb", Self.a100, occ) == [2])
        #expect(MIGPlacement.choose(profile: "3g.20gb", count: 1, candidates: [Self.gpu("h1", used: [1, 5])]) == nil)
    }

    @Test func oneG10GBOnA100FortyTakesTwoSlots() throws {
        var pool = GPUPool([Self.gpu("h1")])
        let r3 = pool.place(profile: "1g.10gb", count: 1, policy: .firstFit)
        let a = try #require(r3)
        #expect(a == [GPUSliceAssignment(host: "h1", gpu: 0, profile: "1g.10gb", slot: 0, size: 2)])
        #expect(pool.gpus[0].occupancy.usedMask == 0b11)
        #expect(Self.slots("1g.10gb", Self.a100, .empty) == [0, 2, 4, 6])
        #expect(MIGPlacement.capacity(Self.p("1g.10gb"), on: Self.a100, occupancy: .empty) == 4)
        // The same name on an H100 is one slot.
        var h = GPUPool([Self.gpu("h1", 0, Self.h100)])
        let r4 = h.place(profile: "1g.10gb", count: 7)
        #expect(r4?.count == 7)
    }

    @Test func onlyOneMediaExtensionInstancePerGPU() throws {
        var pool = GPUPool([Self.gpu("h1")])
        let r5 = pool.place(profile: "1g.5gb+me", count: 2)
        #expect(r5 == nil)
        let r6 = pool.place(profile: "1g.5gb+me", count: 1)
        #expect(r6?.count == 1)
        let r7 = pool.place(profile: "1g.5gb+me", count: 1)
        #expect(r7 == nil)
        let r8 = pool.place(profile: "1g.5gb", count: 6)
        #expect(r8?.count == 6)  // plain 1g still fit beside it
        // Two GPUs: one +me each.
        var two = GPUPool([Self.gpu("h1"), Self.gpu("h1", 1)])
        let r9 = two.place(profile: "1g.5gb+me", count: 2)
        let both = try #require(r9)
        #expect(Set(both.map(\.gpu)) == [0, 1])
        // On an A30 the two +me profiles exclude each other too.
        var a30 = GPUPool([Self.gpu("h1", 0, Self.a30)])
        let r10 = a30.place(profile: "1g.6gb+me", count: 1)
        #expect(r10 != nil)
        let r11 = a30.place(profile: "2g.12gb+me", count: 1)
        #expect(r11 == nil)
        let r12 = a30.place(profile: "2g.12gb", count: 1)
        #expect(r12 != nil)
    }

    @Test func sevenGNeedsAnEmptyGPU() {
        #expect(Self.slots("7g.40gb", Self.a100, .empty) == [0])
        for s in 0..<8 {
            #expect(Self.slots("7g.40gb", Self.a100, GPUOccupancy(usedMask: Self.mask([s]))) == [], "slot \(s) used")
        }
        // Compute or a +me elsewhere in the window also blocks it.
        #expect(Self.slots("7g.40gb", Self.a100, GPUOccupancy(computeUsed: 1)) == [])
        #expect(Self.slots("7g.40gb", Self.a100, .full(Self.a100)) == [])
    }

    @Test func slotSevenIsOnlyReachableBySizeTwoAtSixSizeFourAtFourOrSevenG() {
        for model in [Self.a100, Self.h100, Self.table.model(named: "A100-80GB")!] {
            var reach: [String] = []
            for prof in model.profiles {
                for s in prof.starts where prof.mask(at: s) & 0x80 != 0 { reach.append("\(prof.size)@\(s)") }
            }
            #expect(Set(reach) == ["2@6", "4@4", "8@0"], "\(model.name)")
        }
        // With slots 0-6 full of 1g, slot 7 is free but nothing can use it.
        let occ = GPUOccupancy(usedMask: Self.mask(Array(0...6)), profileCounts: ["1g.5gb": 7], computeUsed: 7)
        for prof in Self.a100.profiles {
            #expect(MIGPlacement.candidateSlots(prof, on: Self.a100, occupancy: occ) == [])
        }
        // With 0-5 used, 1g.10gb reaches slot 7 from 6.
        #expect(Self.slots("1g.10gb", Self.a100, GPUOccupancy(usedMask: Self.mask(Array(0...5)))) == [6])
        #expect(Self.slots("2g.10gb", Self.a100, GPUOccupancy(usedMask: Self.mask(Array(0...5)))) == [])
    }

    @Test func a30Rules() throws {
        #expect(Self.slots("1g.6gb", Self.a30, .empty) == [0, 1, 2, 3])
        #expect(Self.slots("2g.12gb", Self.a30, .empty) == [0, 2])
        #expect(Self.slots("4g.24gb", Self.a30, .empty) == [0])
        var pool = GPUPool([Self.gpu("h1", 0, Self.a30)])
        let r13 = pool.place(profile: "1g.6gb", count: 4)
        #expect(r13?.count == 4)
        let r14 = pool.place(profile: "1g.6gb", count: 1)
        #expect(r14 == nil)
        #expect(Self.slots("2g.12gb", Self.a30, GPUOccupancy(usedMask: Self.mask([1]))) == [2])
        #expect(Self.slots("4g.24gb", Self.a30, GPUOccupancy(usedMask: Self.mask([3]))) == [])
        #expect(MIGPlacement.largestPlaceableSize(on: Self.a30, occupancy: .empty) == 4)
        // A100 profile names do not exist on an A30.
        #expect(Self.a30.profile(named: "1g.5gb") == nil)
        #expect(GPUPool([Self.gpu("h1", 0, Self.a30)]).capacity(profile: "1g.5gb") == 0)
    }

    @Test func wholeGPUModelsRejectProfiles() {
        let a100Profile = Self.p("1g.5gb")
        #expect(!MIGPlacement.canPlace(a100Profile, at: 0, on: Self.v100, occupancy: .empty))
        #expect(MIGPlacement.candidateSlots(a100Profile, on: Self.v100, occupancy: .empty) == [])
        #expect(MIGPlacement.capacity(a100Profile, on: Self.v100, occupancy: .empty) == 0)
        var pool = GPUPool([Self.gpu("h1", 0, Self.v100), Self.gpu("h2", 0, Self.table.model(named: "L40S-48GB")!)])
        let r15 = pool.place(profile: "1g.5gb", count: 1)
        #expect(r15 == nil)
        #expect(pool.capacity(profile: "7g.40gb", ignoringOccupancy: true) == 0)
    }

    @Test func canPlaceChecksEveryRule() {
        let one = Self.p("1g.5gb")
        #expect(MIGPlacement.canPlace(one, at: 6, on: Self.a100, occupancy: .empty))
        #expect(!MIGPlacement.canPlace(one, at: 7, on: Self.a100, occupancy: .empty))  // not an allowed start
        #expect(!MIGPlacement.canPlace(Self.p("3g.20gb"), at: 2, on: Self.a100, occupancy: .empty))  // misaligned
        #expect(!MIGPlacement.canPlace(one, at: 3, on: Self.a100, occupancy: GPUOccupancy(usedMask: 0b1000)))
        #expect(
            !MIGPlacement.canPlace(one, at: 3, on: Self.a100, occupancy: GPUOccupancy(profileCounts: ["1g.5gb": 7])))
        #expect(!MIGPlacement.canPlace(one, at: 3, on: Self.a100, occupancy: GPUOccupancy(computeUsed: 7)))
        #expect(MIGPlacement.canPlace(one, at: 3, on: Self.a100, occupancy: GPUOccupancy(mediaExtensionUsed: true)))
        #expect(
            !MIGPlacement.canPlace(
                Self.p("1g.5gb+me"), at: 3, on: Self.a100, occupancy: GPUOccupancy(mediaExtensionUsed: true)))
    }

    /// The spec's claim, checked exhaustively: on the built-in MIG models, every arrangement that
    /// respects the starts, no overlap and one `+me` also stays within the compute slices and every
    /// `max_per_gpu`, so a mask and a `+me` flag are all the state placement needs.
    @Test func geometryAloneKeepsComputeAndCountLimits() {
        for model in Self.table.models.values where model.mig {
            var arrangements = 0
            func extend(_ used: UInt16, _ me: Bool, _ compute: Int, _ counts: [String: Int], from: Int) {
                arrangements += 1
                #expect(compute <= model.computeSlices, "\(model.name): compute \(compute) with \(counts)")
                for prof in model.profiles {
                    #expect((counts[prof.name] ?? 0) <= prof.maxPerGPU, "\(model.name): \(counts)")
                }
                // Add (profile, start) options in list order only, so each arrangement is visited once.
                let options = model.profiles.enumerated().flatMap { k, prof in prof.starts.map { (k, prof, $0) } }
                for (n, (_, prof, s)) in options.enumerated() where n >= from {
                    guard used & prof.mask(at: s) == 0, !(prof.mediaExtensions && me) else { continue }
                    var c = counts
                    c[prof.name, default: 0] += 1
                    extend(
                        used | prof.mask(at: s), me || prof.mediaExtensions, compute + prof.computeSlices, c,
                        from: n + 1)
                }
            }
            extend(0, false, 0, [:], from: 0)
            #expect(arrangements > (model.memorySlices == 8 ? 100 : 10), "\(model.name): \(arrangements)")
        }
    }

    // MARK: - Occupancy over time

    @Test func occupancyIsTheUnionOfSlicesButThePeakOfCounts() {
        let m = Self.a100
        // Two +me instances one after the other, both inside the window: slices 0 and 1 are both used
        // (a new instance holds its slot for the whole window) but only one +me exists at any instant.
        let uses = [
            GPUSliceUse(interval: Self.iv(0, 10), profile: "1g.5gb+me", slot: 0),
            GPUSliceUse(interval: Self.iv(10, 20), profile: "1g.5gb+me", slot: 1),
            GPUSliceUse(interval: Self.iv(5, 15), profile: "2g.10gb", slot: 4),
            GPUSliceUse(interval: Self.iv(30, 40), profile: "7g.40gb", slot: 0),  // outside the window
        ]
        let occ = GPUOccupancy(model: m, uses: uses, window: Self.iv(0, 20))
        #expect(occ.usedMask == Self.mask([0, 1, 4, 5]))
        #expect(occ.mediaExtensionCount == 1 && occ.profileCounts == ["1g.5gb+me": 1, "2g.10gb": 1])
        #expect(occ.computeUsed == 3)
        #expect(!MIGPlacement.canPlace(Self.p("1g.5gb+me"), at: 2, on: m, occupancy: occ))
        // A window touching only the first: the second +me and the 2g do not count.
        let early = GPUOccupancy(model: m, uses: uses, window: Self.iv(0, 5))
        #expect(early.usedMask == 0b1 && early.computeUsed == 1)
        // Seven 1g instances in a row on slot 0 are one at a time: the count peak is 1.
        let row = (0..<7).map {
            GPUSliceUse(interval: Self.iv(Int64($0) * 10, Int64($0) * 10 + 10), profile: "1g.5gb", slot: 0)
        }
        let occRow = GPUOccupancy(model: m, uses: row, window: Self.iv(0, 70))
        #expect(occRow.profileCounts["1g.5gb"] == 1 && occRow.usedMask == 1)
        #expect(Self.slots("1g.5gb", m, occRow) == [1, 2, 3, 4, 5, 6])
        // An instance the model does not know blocks the whole GPU.
        let unknown = GPUOccupancy(
            model: m, uses: [GPUSliceUse(interval: Self.iv(0, 5), profile: "1g.6gb", slot: 0)], window: Self.iv(0, 5))
        #expect(unknown.usedMask == m.fullMask && Self.slots("1g.5gb", m, unknown) == [])
    }

    // MARK: - Packing policy

    /// docs/packing.md, example 1: slots 0-3 hold a 4g.20gb; a 1g.5gb goes to slot 6, keeping slots
    /// 4-5 for a 2g.10gb (which may start at 4 but not at 6).
    @Test func workedExampleSmallProfileGoesHigh() throws {
        let occ = GPUOccupancy(
            model: Self.a100, uses: [GPUSliceUse(interval: Self.iv(0, 100), profile: "4g.20gb", slot: 0)],
            window: Self.iv(0, 100))
        let best = try #require(MIGPlacement.bestSlot(Self.p("1g.5gb"), on: Self.a100, occupancy: occ))
        #expect(best.slot == 6)
        var after6 = occ
        after6.add(Self.p("1g.5gb"), at: 6)
        var after4 = occ
        after4.add(Self.p("1g.5gb"), at: 4)
        #expect(Self.slots("2g.10gb", Self.a100, after6) == [4])
        #expect(Self.slots("2g.10gb", Self.a100, after4) == [])
        // Before: one 3g place (class 1), two 1g.10gb + one 2g.10gb (class 2), three 1g + one 1g+me (class 3).
        #expect(MIGPlacement.Capability(model: Self.a100, occupancy: occ).classes == [0, 1, 3, 4])
        // Any slot loses the 3g place and one 1g; slot 6 loses one 1g.10gb place, slot 4 or 5 also the 2g.
        #expect(best.loss.classes == [0, 1, 1, 1])
        for s in [4, 5] {
            var o = occ
            o.add(Self.p("1g.5gb"), at: s)
            #expect(
                MIGPlacement.Capability(model: Self.a100, occupancy: occ).loss(
                    to: MIGPlacement.Capability(model: Self.a100, occupancy: o)
                ).classes == [0, 1, 2, 1])
        }
        // First fit takes slot 4 and loses the 2g place.
        #expect(
            MIGPlacement.choose(
                profile: "1g.5gb", count: 1,
                candidates: [GPUCandidate(host: "h", gpuIndex: 0, model: Self.a100, occupancy: occ)], policy: .firstFit)?
                .first?.slot == 4)
    }

    /// docs/packing.md, example 2: a partly used GPU is preferred to an empty one, which keeps its
    /// 7g place; first fit breaks the empty GPU because its host sorts first.
    @Test func workedExamplePartlyUsedGPUFirst() throws {
        let gpus = [Self.gpu("a-host"), Self.gpu("b-host", used: [0, 1, 2, 3])]
        let packed = try #require(MIGPlacement.choose(profile: "1g.5gb", count: 1, candidates: gpus))
        #expect(packed == [GPUSliceAssignment(host: "b-host", gpu: 0, profile: "1g.5gb", slot: 6, size: 1)])
        let first = try #require(MIGPlacement.choose(profile: "1g.5gb", count: 1, candidates: gpus, policy: .firstFit))
        #expect(first == [GPUSliceAssignment(host: "a-host", gpu: 0, profile: "1g.5gb", slot: 0, size: 1)])
        // The numbers in the document.
        let onEmpty = try #require(MIGPlacement.bestSlot(Self.p("1g.5gb"), on: Self.a100, occupancy: .empty))
        #expect(onEmpty.slot == 6 && onEmpty.loss.classes == [1, 1, 1, 1])
        #expect(MIGPlacement.Capability(model: Self.a100, occupancy: .empty).classes == [1, 3, 7, 8])
        let onUsed = try #require(MIGPlacement.bestSlot(Self.p("1g.5gb"), on: Self.a100, occupancy: gpus[1].occupancy))
        #expect(onUsed.slot == 6 && onUsed.loss.classes == [0, 1, 1, 1])
        // Then a 7g.40gb still fits (on a-host) after packing, not after first fit.
        var packedPool = GPUPool(gpus)
        var firstPool = GPUPool(gpus)
        _ = packedPool.place(profile: "1g.5gb", count: 1)
        _ = firstPool.place(profile: "1g.5gb", count: 1, policy: .firstFit)
        #expect(packedPool.capacity(profile: "7g.40gb") == 1 && firstPool.capacity(profile: "7g.40gb") == 0)
    }

    @Test func threeGGoesToSlotFourSoThatFourGKeepsItsOnlyStart() throws {
        var pool = GPUPool([Self.gpu("h1")])
        let r16 = pool.place(profile: "3g.20gb", count: 1)
        #expect(try #require(r16).first?.slot == 4)
        let r17 = pool.place(profile: "4g.20gb", count: 1)
        #expect(r17?.first?.slot == 0)
        var ff = GPUPool([Self.gpu("h1")])
        let r18 = ff.place(profile: "3g.20gb", count: 1, policy: .firstFit)
        #expect(r18?.first?.slot == 0)
        let r19 = ff.place(profile: "4g.20gb", count: 1, policy: .firstFit)
        #expect(r19 == nil)
    }

    @Test func smallSlicesAvoidBreakingAHalfGPU() throws {
        // GPU a: 4g at 0, free 4-7 (one 3g place). GPU b: 1g at 0, 2, 4, 6, free 1, 3, 5, 7 (only 1g places).
        let a = GPUCandidate(
            host: "a", gpuIndex: 0, model: Self.a100,
            occupancy: GPUOccupancy(usedMask: 0x0F, profileCounts: ["4g.20gb": 1], computeUsed: 4))
        let b = GPUCandidate(
            host: "b", gpuIndex: 0, model: Self.a100,
            occupancy: GPUOccupancy(usedMask: 0x55, profileCounts: ["1g.5gb": 4], computeUsed: 4))
        let placed = try #require(MIGPlacement.choose(profile: "1g.5gb", count: 3, candidates: [a, b]))
        #expect(placed.map(\.host) == ["b", "b", "b"])
        #expect(Set(placed.map(\.slot)) == [1, 3, 5])
    }

    @Test func tightestInTimeBreaksTies() throws {
        let window = Self.iv(100, 200)
        // Both GPUs are empty during the window; on h2 a 1g.5gb at slot 6 ended at 100 and a 3g at 4
        // starts at 260: its slice 6 is the tightest fit in time.
        let uses = [
            (interval: Self.iv(50, 100), slot: 6, size: 1), (interval: Self.iv(260, 300), slot: 4, size: 4),
            (interval: Self.iv(150, 160), slot: 0, size: 1),  // overlaps the window: ignored
        ]
        let slack = MIGPlacement.sliceSlack(around: window, uses: uses, memorySlices: 8, cap: 1000)
        #expect(slack == [2000, 2000, 2000, 2000, 1060, 1060, 60, 1060])
        let gpus = [
            GPUCandidate(host: "h1", gpuIndex: 0, model: Self.a100, sliceSlack: [Int64](repeating: 2000, count: 8)),
            GPUCandidate(host: "h2", gpuIndex: 0, model: Self.a100, sliceSlack: slack),
        ]
        #expect(MIGPlacement.choose(profile: "1g.5gb", count: 1, candidates: gpus)?.first?.host == "h2")
        #expect(
            MIGPlacement.choose(
                profile: "1g.5gb", count: 1,
                candidates: gpus.map {
                    var g = $0
                    g.sliceSlack = nil
                    return g
                })?.first?.host == "h1")
    }

    @Test func keepsCurrentPlacementsAndIsAllOrNothing() throws {
        var pool = GPUPool([Self.gpu("h1"), Self.gpu("h2")])
        let keep = [GPUSliceAssignment(host: "h2", gpu: 0, profile: "1g.5gb", slot: 0)]
        let r20 = pool.place(profile: "1g.5gb", count: 2, keep: keep)
        let got = try #require(r20)
        #expect(got.first == GPUSliceAssignment(host: "h2", gpu: 0, profile: "1g.5gb", slot: 0, size: 1))
        #expect(got.first?.allocation == Allocation(host: "h2", gpu: 0, profile: "1g.5gb", slot: 0, size: 1))
        #expect(got[1].host == "h2")  // the now partly used GPU
        let before = pool.gpus
        let r21 = pool.place(profile: "7g.40gb", count: 2)
        #expect(r21 == nil)  // only h1 is empty
        #expect(pool.gpus == before)
        // A kept placement that no longer fits is dropped and replaced.
        var busy = GPUPool([Self.gpu("h1", used: [0])])
        let r22 = busy.place(
            profile: "1g.5gb", count: 1, keep: [GPUSliceAssignment(host: "h1", gpu: 0, profile: "1g.5gb", slot: 0)])
        let moved = try #require(r22)
        #expect(moved.first?.slot == 1)  // fills the pair slot 0 already broke

    }

    @Test func filtersByModelAndHost() throws {
        let gpus = [
            Self.gpu("h1", 0, Self.a100), Self.gpu("h2", 0, Self.table.model(named: "A100-80GB")!),
            Self.gpu("h3", 0, Self.h100),
        ]
        var pool = GPUPool(gpus)
        #expect(pool.capacity(profile: "1g.10gb") == 4 + 7 + 7)
        #expect(pool.capacity(profile: "1g.10gb", gpuModel: "H100-80GB") == 7)
        #expect(pool.capacity(profile: "1g.10gb", hosts: ["h1"]) == 4)
        let r23 = pool.place(profile: "1g.10gb", count: 5, gpuModel: "A100-40GB", hosts: ["h1", "h3"])
        #expect(r23 == nil)  // 4 places
        let r24 = pool.place(profile: "1g.10gb", count: 4, gpuModel: "A100-40GB", hosts: ["h1", "h3"])
        let h1 = try #require(r24)
        #expect(h1.map(\.slot).sorted() == [0, 2, 4, 6] && h1.allSatisfy { $0.host == "h1" })
        let r25 = pool.place(profile: "1g.10gb", count: 7, gpuModel: "H100-80GB")
        let h3 = try #require(r25)
        #expect(h3.allSatisfy { $0.host == "h3" })
    }

    // MARK: - Properties

    /// A GPU's instances, tracked independently of the code under test.
    struct Placed: Equatable {
        var profile: MIGProfile
        var slot: Int
    }

    static let models = [a100, h100, a30, table.model(named: "A100-80GB")!]

    /// Random valid occupancy: random profiles at random allowed slots, kept when they fit.
    static func randomInstances(on model: GPUModel, attempts: Int, rng: inout SplitMix64) -> [Placed] {
        var out: [Placed] = []
        var occ = GPUOccupancy.empty
        for _ in 0..<attempts {
            let prof = model.profiles.randomElement(using: &rng)!
            let s = prof.starts.randomElement(using: &rng)!
            if MIGPlacement.canPlace(prof, at: s, on: model, occupancy: occ) {
                occ.add(prof, at: s)
                out.append(Placed(profile: prof, slot: s))
            }
        }
        return out
    }

    /// Every instance at an allowed start, no two overlapping, one +me at most, limits held.
    static func checkInvariants(_ list: [Placed], on model: GPUModel) -> String? {
        var used: UInt16 = 0
        var counts: [String: Int] = [:]
        var me = 0
        var compute = 0
        for x in list {
            guard x.profile.starts.contains(x.slot) else { return "\(x.profile.name) at disallowed slot \(x.slot)" }
            let m = x.profile.mask(at: x.slot)
            guard m & ~model.fullMask == 0 else { return "\(x.profile.name)@\(x.slot) runs off the GPU" }
            guard used & m == 0 else { return "\(x.profile.name)@\(x.slot) overlaps" }
            used |= m
            counts[x.profile.name, default: 0] += 1
            if counts[x.profile.name]! > x.profile.maxPerGPU { return "too many \(x.profile.name)" }
            if x.profile.mediaExtensions { me += 1 }
            compute += x.profile.computeSlices
        }
        if me > 1 { return "\(me) +me instances" }
        if compute > model.computeSlices { return "compute \(compute) > \(model.computeSlices)" }
        return nil
    }

    @Test(arguments: [UInt64(0x316), 0xA100, 0x5EED_0001, 0x5EED_0002, 0xC0FFEE])
    func randomPlacementsNeverOverlapAndStartAtAllowedSlots(seed: UInt64) {
        var rng = SplitMix64(seed: seed)
        for round in 0..<60 {
            // 1-5 GPUs of random models with random existing instances.
            var gpus: [GPUCandidate] = []
            var truth: [[Placed]] = []
            for k in 0..<Int.random(in: 1...5, using: &rng) {
                let model = Self.models.randomElement(using: &rng)!
                let existing = Self.randomInstances(on: model, attempts: Int.random(in: 0...6, using: &rng), rng: &rng)
                var occ = GPUOccupancy.empty
                for x in existing { occ.add(x.profile, at: x.slot) }
                gpus.append(
                    GPUCandidate(
                        host: "h\(Int.random(in: 0...2, using: &rng))", gpuIndex: k, model: model, occupancy: occ))
                truth.append(existing)
            }
            var pool = GPUPool(gpus)
            // Truth indexed like the pool (sorted by host, index).
            var byKey: [String: [Placed]] = [:]
            for (g, t) in zip(gpus, truth) { byKey["\(g.host)/\(g.gpuIndex)"] = t }
            for _ in 0..<8 {
                let model = Self.models.randomElement(using: &rng)!
                let prof = model.profiles.randomElement(using: &rng)!
                let count = Int.random(in: 1...3, using: &rng)
                let policy: PlacementPolicy = Bool.random(using: &rng) ? .packing : .firstFit
                let before = pool
                guard let got = pool.place(profile: prof.name, count: count, policy: policy) else {
                    #expect(pool.gpus == before.gpus, "failed placement changed the pool, seed \(seed) round \(round)")
                    continue
                }
                #expect(got.count == count)
                // Replaying the answer one by one: each was a free candidate slot at its turn.
                var replay = before
                for a in got {
                    let free = replay.candidateSlots(profile: a.profile, host: a.host, gpu: a.gpu)
                    #expect(free.contains(a.slot), "\(a) not among free slots \(free), seed \(seed) round \(round)")
                    let committed = replay.commit(a)
                    #expect(committed)
                    let g = replay.gpu(host: a.host, index: a.gpu)!
                    byKey["\(a.host)/\(a.gpu)", default: []].append(
                        Placed(profile: g.model.profile(named: a.profile)!, slot: a.slot))
                }
                #expect(replay.gpus == pool.gpus)
            }
            for g in pool.gpus {
                if let problem = Self.checkInvariants(byKey["\(g.host)/\(g.gpuIndex)"] ?? [], on: g.model) {
                    Issue.record("\(problem) on \(g.host)/\(g.gpuIndex) \(g.model.name), seed \(seed) round \(round)")
                }
            }
        }
    }

    /// `capacity` is exact: filling a GPU slot by slot with one profile places exactly that many.
    @Test func capacityMatchesRepeatedPlacement() {
        var rng = SplitMix64(seed: 0xCA9A_C17E)
        for _ in 0..<400 {
            let model = Self.models.randomElement(using: &rng)!
            var occ = GPUOccupancy.empty
            for x in Self.randomInstances(on: model, attempts: Int.random(in: 0...5, using: &rng), rng: &rng) {
                occ.add(x.profile, at: x.slot)
            }
            for prof in model.profiles {
                var o = occ
                var n = 0
                while let s = MIGPlacement.candidateSlots(prof, on: model, occupancy: o).randomElement(using: &rng) {
                    o.add(prof, at: s)
                    n += 1
                }
                #expect(
                    MIGPlacement.capacity(prof, on: model, occupancy: occ) == n, "\(prof.name) on \(model.name) \(occ)")
            }
        }
    }

    // MARK: - Quality: packing against first fit on a trace

    struct TraceResult: CustomStringConvertible {
        var offered = 0
        var accepted = 0
        var acceptedEighthHours: Int64 = 0
        var description: String { "\(accepted)/\(offered) requests, \(acceptedEighthHours) slice-hours" }
    }

    /// A deterministic trace of MIG requests on `gpus` A100-40GB GPUs (two per host): each arrives at
    /// step t, starts now or up to 6 steps later, lasts 1-24 steps; the profile mix favours small
    /// slices but a fifth of the requests want a half or whole GPU. Each policy sees the same trace.
    static func runTrace(
        seed: UInt64, gpus: Int, requests: Int, policy: PlacementPolicy, maxDelay: Int64 = 6, maxDuration: Int64 = 24,
        mix: [(String, Int)] = defaultMix
    ) -> TraceResult {
        var rng = SplitMix64(seed: seed)
        let total = mix.reduce(0) { $0 + $1.1 }
        var live: [[GPUSliceUse]] = Array(repeating: [], count: gpus)
        var result = TraceResult()
        for t in 0..<requests {
            let now = Int64(t)
            var pick = Int.random(in: 0..<total, using: &rng)
            var name = mix[0].0
            for (n, w) in mix {
                if pick < w {
                    name = n
                    break
                }
                pick -= w
            }
            let count = Int.random(in: 0..<10, using: &rng) < 8 ? 1 : 2
            let start = now + Int64.random(in: 0...maxDelay, using: &rng)
            let window = Interval(start: start, end: start + Int64.random(in: 1...maxDuration, using: &rng))
            result.offered += 1
            for k in 0..<gpus { live[k].removeAll { $0.interval.end <= now } }
            let candidates = (0..<gpus).map { k in
                GPUCandidate(
                    host: "h\(k / 2)", gpuIndex: k % 2, model: a100,
                    occupancy: GPUOccupancy(model: a100, uses: live[k], window: window),
                    sliceSlack: MIGPlacement.sliceSlack(
                        around: window,
                        uses: live[k].map { ($0.interval, $0.slot, a100.slices(ofProfile: $0.profile)!) },
                        memorySlices: 8, cap: 48))
            }
            guard let got = MIGPlacement.choose(profile: name, count: count, candidates: candidates, policy: policy)
            else { continue }
            result.accepted += 1
            for a in got {
                live[Int(a.host.dropFirst())! * 2 + a.gpu].append(
                    GPUSliceUse(interval: window, profile: a.profile, slot: a.slot))
                result.acceptedEighthHours +=
                    Int64(a100.eighths(profile: a100.profile(named: a.profile)!)) * window.length
            }
        }
        return result
    }

    static let defaultMix: [(String, Int)] = [
        ("1g.5gb", 30), ("1g.5gb+me", 4), ("1g.10gb", 12), ("2g.10gb", 16), ("3g.20gb", 16), ("4g.20gb", 10),
        ("7g.40gb", 12),
    ]

    static let traceSeeds: [UInt64] = [1, 2, 3, 4, 5, 6, 7, 8]

    @Test func packingAcceptsMoreThanFirstFit() {
        var packedTotal = TraceResult()
        var firstTotal = TraceResult()
        var lines: [String] = []
        for seed in Self.traceSeeds {
            let packed = Self.runTrace(seed: seed, gpus: 4, requests: 1500, policy: .packing)
            let first = Self.runTrace(seed: seed, gpus: 4, requests: 1500, policy: .firstFit)
            packedTotal.offered += packed.offered
            packedTotal.accepted += packed.accepted
            packedTotal.acceptedEighthHours += packed.acceptedEighthHours
            firstTotal.offered += first.offered
            firstTotal.accepted += first.accepted
            firstTotal.acceptedEighthHours += first.acceptedEighthHours
            lines.append("seed \(seed): packing \(packed), first fit \(first)")
        }
        print("MIG trace (4 × A100-40GB, 1500 requests per seed):\n  " + lines.joined(separator: "\n  "))
        print("MIG trace total: packing \(packedTotal), first fit \(firstTotal)")
        #expect(packedTotal.accepted > firstTotal.accepted)
        #expect(packedTotal.acceptedEighthHours > firstTotal.acceptedEighthHours)
    }
}
