import BerthCore
import BerthJSON
import Testing

/// Pure tests of the preemption policy (`PreemptionPlanner.plan`, `PreemptionPlanner.backfill`) and
/// of how the calendar counts preemptibles under each `PreemptibleView`.
@Suite struct PreemptionPlannerTests {
    static let now: Int64 = 1000
    static let notice: Int64 = 100
    static let cap = InstanceSize(vcpus: 16, memoryMB: 16_000, diskGB: 100)

    static func size(_ v: Int64, _ m: Int64 = 1000, _ d: Int64 = 10) -> InstanceSize {
        InstanceSize(vcpus: v, memoryMB: m, diskGB: d)
    }

    static func holding(
        _ id: String, _ s: InstanceSize = size(4), created: Int64 = 0, guaranteed: Int64 = 500, preemptAt: Int64? = nil,
        gpu: Int? = nil, slot: Int? = nil, sliceSize: Int = 1, me: Bool = false
    ) -> PreemptionPlanner.Holding {
        .init(
            id: id, size: s, gpu: gpu, slot: slot, sliceSize: sliceSize, mediaExtensions: me, createdAt: created,
            guaranteedUntil: guaranteed, preemptAt: preemptAt)
    }

    static func whole(_ lease: String, _ s: Int64, _ e: Int64) -> PreemptionPlanner.Holder {
        .init(interval: Interval(start: s, end: e), leaseID: lease, usage: .wholeHost)
    }

    static func slices(_ lease: String, _ s: Int64, _ e: Int64, gpu: Int, slot: Int, size: Int, me: Bool = false)
        -> PreemptionPlanner.Holder
    {
        .init(
            interval: Interval(start: s, end: e), leaseID: lease,
            usage: .gpuSlices(gpu: gpu, slot: slot, size: size, mediaExtensions: me))
    }

    static func instances(_ lease: String, _ s: Int64, _ e: Int64, _ sz: InstanceSize, count n: Int64 = 1)
        -> PreemptionPlanner.Holder
    {
        .init(
            interval: Interval(start: s, end: e), leaseID: lease,
            usage: .instances(count: n, vcpus: sz.vcpus, memoryMB: sz.memoryMB, diskGB: sz.diskGB))
    }

    static func plan(
        _ holders: [PreemptionPlanner.Holder], _ ps: [PreemptionPlanner.Holding], now: Int64 = now,
        notice: Int64 = notice,
        capacity: InstanceSize = cap
    ) -> PreemptionPlanner.Plan {
        PreemptionPlanner.plan(capacity: capacity, holders: holders, preemptibles: ps, now: now, notice: notice)
    }

    static func isEmpty(_ p: PreemptionPlanner.Plan) -> Bool { p.decisions.isEmpty && p.overcommitted.isEmpty }

    /// id -> preemptAt of the decisions.
    static func times(_ p: PreemptionPlanner.Plan) -> [String: Int64] {
        Dictionary(uniqueKeysWithValues: p.decisions.map { ($0.preemptibleID, $0.preemptAt) })
    }

    // MARK: - Whole host

    @Test func wholeHostReservationPreemptsEveryPreemptiblePastItsGuarantee() {
        let p = Self.plan(
            [Self.whole("L", 2000, 3000)],
            [
                Self.holding("a", guaranteed: 500), Self.holding("b", guaranteed: 1200),
                Self.holding("c", Self.size(1), guaranteed: 1000),
            ])
        #expect(p.overcommitted.isEmpty)
        #expect(Self.times(p) == ["a": 1900, "b": 1900, "c": 1900])
        for d in p.decisions {
            #expect(d.neededAt == 2000)
            #expect(d.neededBy == "L")
            #expect(d.neededUntil == 3000)
        }
    }

    @Test func neverBeforeTheGuaranteeNorInThePast() {
        // The guarantee ends inside the notice period: preempted exactly at its guarantee.
        #expect(
            Self.times(Self.plan([Self.whole("L", 2000, 3000)], [Self.holding("a", guaranteed: 1950)])) == ["a": 1950])
        // The guarantee ends exactly when the reservation starts.
        #expect(
            Self.times(Self.plan([Self.whole("L", 2000, 3000)], [Self.holding("a", guaranteed: 2000)])) == ["a": 2000])
        // start - notice is already past: now.
        #expect(
            Self.times(Self.plan([Self.whole("L", 1050, 3000)], [Self.holding("a", guaranteed: 500)])) == ["a": 1000])
        // The reservation already holds the host (started before now): now.
        let started = Self.plan([Self.whole("L", 800, 3000)], [Self.holding("a", guaranteed: 500)])
        #expect(Self.times(started) == ["a": 1000])
        #expect(started.decisions.first?.neededAt == 1000)
        // With no notice, exactly at the start.
        #expect(Self.times(Self.plan([Self.whole("L", 2000, 3000)], [Self.holding("a")], notice: 0)) == ["a": 2000])
        // The rule in full, over a grid.
        for start in stride(from: Int64(1000), through: 3000, by: 250) {
            for g in stride(from: Int64(0), through: start, by: 250) {
                let p = Self.plan([Self.whole("L", start, start + 500)], [Self.holding("a", guaranteed: g)])
                #expect(Self.times(p) == ["a": max(start - Self.notice, g, Self.now)], "start \(start) guarantee \(g)")
                #expect(p.overcommitted.isEmpty)
            }
        }
    }

    @Test func aReservationOverAGuaranteedPreemptibleIsOvercommitted() {
        let p = Self.plan(
            [Self.whole("L", 2000, 3000)], [Self.holding("a", guaranteed: 500), Self.holding("b", guaranteed: 2001)])
        #expect(p.overcommitted == [2000])
        #expect(!p.decisions.contains { $0.preemptibleID == "b" }, "a guaranteed preemptible is never chosen")
    }

    @Test func reservationsThatAreOverOrEndedNeedNothing() {
        // Ended before now, or touching only: nothing to do.
        #expect(Self.plan([Self.whole("L", 0, 1000)], [Self.holding("a")]).decisions.isEmpty)
        #expect(Self.isEmpty(Self.plan([Self.whole("L", 0, 900)], [Self.holding("a")])))
        // No preemptibles at all.
        #expect(Self.isEmpty(Self.plan([Self.whole("L", 2000, 3000)], [])))
    }

    // MARK: - GPU slices

    @Test func gpuSlicesOnlyHitThePreemptibleOnOverlappingSlices() {
        let ps = [
            Self.holding("s0", gpu: 0, slot: 0, sliceSize: 1),
            Self.holding("s4", gpu: 0, slot: 4, sliceSize: 2),
            Self.holding("s3", gpu: 0, slot: 3, sliceSize: 1),
            Self.holding("other-gpu", gpu: 1, slot: 4, sliceSize: 2),
            Self.holding("cpu-only", Self.size(2)),
        ]
        // [4, 8) on GPU 0.
        let p = Self.plan([Self.slices("L", 2000, 3000, gpu: 0, slot: 4, size: 4)], ps)
        #expect(Self.times(p) == ["s4": 1900])
        #expect(p.overcommitted.isEmpty)
        // [2, 4) touches s3 only; [0, 8) touches all of GPU 0.
        #expect(Set(Self.times(Self.plan([Self.slices("L", 2000, 3000, gpu: 0, slot: 2, size: 2)], ps)).keys) == ["s3"])
        #expect(
            Set(Self.times(Self.plan([Self.slices("L", 2000, 3000, gpu: 0, slot: 0, size: 8)], ps)).keys) == [
                "s0", "s3", "s4",
            ])
    }

    @Test func mediaExtensionsConflictAcrossDisjointSlices() {
        // A GPU holds at most one +me instance: a +me reservation displaces a +me preemptible on
        // another slice, but not a plain one.
        let ps = [Self.holding("me", gpu: 0, slot: 2, me: true), Self.holding("plain", gpu: 0, slot: 3)]
        let p = Self.plan([Self.slices("L", 2000, 3000, gpu: 0, slot: 6, size: 1, me: true)], ps)
        #expect(Self.times(p) == ["me": 1900])
        // A plain reservation next to the +me one: nothing.
        #expect(Self.plan([Self.slices("L", 2000, 3000, gpu: 0, slot: 6, size: 1)], ps).decisions.isEmpty)
        // A +me reservation on the other GPU: nothing.
        #expect(Self.plan([Self.slices("L", 2000, 3000, gpu: 1, slot: 2, size: 1, me: true)], ps).decisions.isEmpty)
    }

    @Test func aGpuVictimNamesTheReservationOnItsSlices() {
        // Two GPU reservations begin together on GPU 0; the victim sits on the second one's slices,
        // so that is the lease that needs it and its end is when the capacity comes back.
        let holders = [
            Self.slices("short-elsewhere", 2000, 2100, gpu: 0, slot: 0, size: 1),
            Self.slices("long-over-it", 2000, 5000, gpu: 0, slot: 4, size: 4),
        ]
        let p = Self.plan(holders, [Self.holding("v", gpu: 0, slot: 4, sliceSize: 2)])
        let d = p.decisions.first
        #expect(p.decisions.count == 1)
        #expect(d?.preemptAt == 1900)
        #expect(d?.neededBy == "long-over-it")
        #expect(d?.neededUntil == 5000)
    }

    // MARK: - Shared capacity

    @Test func instanceShortageTakesTheFewestVictims() {
        // 8 vcpus reserved; 4 + 4 + 8 running: 8 short. One 8-vcpu victim beats two 4-vcpu ones,
        // even though it has run longest.
        let p = Self.plan(
            [Self.instances("L", 2000, 3000, Self.size(8))],
            [
                Self.holding("a", Self.size(4), created: 900), Self.holding("b", Self.size(4), created: 900),
                Self.holding("c", Self.size(8), created: 0),
            ])
        #expect(Self.times(p) == ["c": 1900])
        #expect(p.decisions.first?.neededBy == "L")
        #expect(p.decisions.first?.neededAt == 2000)
        #expect(p.decisions.first?.neededUntil == 3000)
    }

    @Test func instanceShortageThenLeastWorkLost() {
        // Memory is short by 8000 MB; either preemptible covers it. a is older but has 1 vcpu:
        // 1 × (1900 - 0) = 1900 vcpu·s lost, against 8 × (1900 - 900) = 8000 for b.
        let p = Self.plan(
            [Self.instances("L", 2000, 3000, Self.size(1, 8000))],
            [
                Self.holding("a", Self.size(1, 8000), created: 0),
                Self.holding("b", Self.size(8, 8000), created: 900, guaranteed: 950),
            ])
        #expect(Self.times(p) == ["a": 1900])
    }

    @Test func instanceShortageThenNewest() {
        // Same work lost (2 × 900 = 1 × 1800): the newest goes.
        let p = Self.plan(
            [Self.instances("L", 2000, 3000, Self.size(1, 8000))],
            [
                Self.holding("old", Self.size(1, 8000), created: 100),
                Self.holding("new", Self.size(2, 8000), created: 1000, guaranteed: 1000),
            ])
        #expect(Self.times(p) == ["new": 1900])
    }

    @Test func alreadyScheduledVictimsArePreferredAndMovedEarlier() {
        // b is already going at 5000 for a later reservation; a would lose less work, but taking b
        // (earlier) preempts nobody new.
        let p = Self.plan(
            [Self.instances("L", 2000, 3000, Self.size(1, 8000))],
            [
                Self.holding("a", Self.size(1, 8000), created: 900, guaranteed: 950),
                Self.holding("b", Self.size(8, 8000), created: 0, preemptAt: 5000),
            ])
        #expect(Self.times(p) == ["b": 1900])
    }

    @Test func aPreferredPreemptibleGoesInsteadOfOthers() {
        // n was just created in the way of L: it goes, though it would lose more work than a.
        let ps = [
            Self.holding("a", Self.size(1, 8000), created: 0),
            Self.holding("n", Self.size(8, 8000), created: 1000, guaranteed: 1000),
        ]
        let holders = [Self.instances("L", 2000, 3000, Self.size(1, 8000))]
        #expect(Self.times(Self.plan(holders, ps)) == ["a": 1900])
        let p = PreemptionPlanner.plan(
            capacity: Self.cap, holders: holders, preemptibles: ps, now: Self.now, notice: Self.notice, preferred: ["n"]
        )
        #expect(Self.times(p) == ["n": 1900])
        // Still the fewest: when n alone does not cover the shortage, a goes with it.
        let big = [Self.instances("L", 2000, 3000, Self.size(1, 12_000))]
        let both = PreemptionPlanner.plan(
            capacity: Self.cap, holders: big, preemptibles: ps, now: Self.now, notice: Self.notice, preferred: ["n"])
        #expect(Set(Self.times(both).keys) == ["a", "n"])
    }

    @Test func preemptsOnlyWhenCapacityIsShort() {
        // 8 reserved + 4 + 4 running = 16: fits exactly.
        let fits = Self.plan(
            [Self.instances("L", 2000, 3000, Self.size(8))],
            [Self.holding("a", Self.size(4)), Self.holding("b", Self.size(4))])
        #expect(Self.isEmpty(fits))
        // One more vcpu reserved: exactly one goes.
        let short = Self.plan(
            [Self.instances("L", 2000, 3000, Self.size(9))],
            [Self.holding("a", Self.size(4)), Self.holding("b", Self.size(4))])
        #expect(short.decisions.count == 1)
        // Two reservations one after the other never add up.
        let sequential = Self.plan(
            [Self.instances("L1", 2000, 3000, Self.size(8)), Self.instances("L2", 3000, 4000, Self.size(8))],
            [Self.holding("a", Self.size(4)), Self.holding("b", Self.size(4))])
        #expect(sequential.decisions.isEmpty)
        // A preemptible already going before the reservation starts makes room: nobody else goes.
        let gone = Self.plan(
            [Self.instances("L", 2000, 3000, Self.size(8))],
            [Self.holding("a", Self.size(8), preemptAt: 1500), Self.holding("b", Self.size(8))])
        #expect(gone.decisions.isEmpty)
        #expect(gone.overcommitted.isEmpty)
    }

    @Test func shortageThatOnlyGuaranteedPreemptiblesCouldCoverIsOvercommitted() {
        // b could free enough but is guaranteed until after 2000; a alone is too small.
        let p = Self.plan(
            [Self.instances("L", 2000, 3000, Self.size(12))],
            [Self.holding("a", Self.size(2)), Self.holding("b", Self.size(8), guaranteed: 2500)])
        #expect(p.overcommitted == [2000])
        #expect(!p.decisions.contains { $0.preemptibleID == "b" })
        // The same reservation after b's guarantee: b goes (at its guarantee, not before).
        let later = Self.plan(
            [Self.instances("L", 2550, 3000, Self.size(12))],
            [Self.holding("a", Self.size(2)), Self.holding("b", Self.size(8), guaranteed: 2500)])
        #expect(later.overcommitted.isEmpty)
        #expect(Self.times(later) == ["b": 2500])
    }

    @Test func aScheduledPreemptionMovesEarlierNeverLater() {
        // Already going at 1500, needed at 2000 (would be 1900): kept at 1500, no new decision.
        let kept = Self.plan([Self.whole("L", 2000, 3000)], [Self.holding("a", preemptAt: 1500)])
        #expect(kept.decisions.isEmpty)
        // Already going at 3000, needed at 2000: moved to 1900.
        let moved = Self.plan([Self.whole("L", 2000, 3000)], [Self.holding("a", preemptAt: 3000)])
        #expect(Self.times(moved) == ["a": 1900])
        // Two reservations need it: the earlier one decides.
        let two = Self.plan([Self.whole("L2", 4000, 5000), Self.whole("L1", 2000, 3000)], [Self.holding("a")])
        #expect(Self.times(two) == ["a": 1900])
        #expect(two.decisions.first?.neededBy == "L1")
    }

    @Test func aVictimIsNotPreemptedEarlierThanNeeded() {
        // L1 (8 vcpus from 2000) needs one of a, b to go; L2 (8 more from 2300) needs the other.
        // Whichever goes for L2 goes at 2300 - 600 = 1700, before L1 starts, so at 2000 the host
        // already has room: the victim chosen for L1 only needs to go by 2300 - notice as well.
        let p = Self.plan(
            [Self.instances("L1", 2000, 4000, Self.size(8)), Self.instances("L2", 2300, 4000, Self.size(8))],
            [Self.holding("a", Self.size(8), created: 0), Self.holding("b", Self.size(8), created: 500)], notice: 600)
        #expect(Set(Self.times(p).keys) == ["a", "b"])
        #expect(Self.times(p) == ["a": 1700, "b": 1700])
    }

    @Test func aLaterInstantsVictimCanMakeAnEarlierOneNeedless() {
        // L1 (from 2000) is short of memory: a or b must go, and b loses less work. L2 (from 2300)
        // is short of vcpus: only a can cover it, and goes at 2300 - 600 = 1700, before L1 starts.
        // With a gone, b fits at 2000 and at 2300 alike: b is preempted for nothing.
        let p = Self.plan(
            [
                Self.instances("L1", 2000, 4000, Self.size(2, 10_000)),
                Self.instances("L2", 2300, 4000, Self.size(11, 100)),
            ],
            [Self.holding("a", Self.size(4, 4000), created: 0), Self.holding("b", Self.size(1, 4000), created: 0)],
            notice: 600)
        #expect(p.overcommitted.isEmpty)
        #expect(Self.times(p)["a"] != nil)
        #expect(Self.times(p) == ["a": 1400])
    }

    @Test func aDeficitInOneDimensionIsCoveredInThatDimension() {
        // Disk is short; only c has disk to give.
        let p = Self.plan(
            [Self.instances("L", 2000, 3000, InstanceSize(vcpus: 1, memoryMB: 100, diskGB: 80))],
            [
                Self.holding("a", InstanceSize(vcpus: 8, memoryMB: 8000, diskGB: 1)),
                Self.holding("c", InstanceSize(vcpus: 1, memoryMB: 100, diskGB: 30)),
            ])
        #expect(Self.times(p) == ["c": 1900])
    }

    @Test func manyCandidatesStillCoverTheDeficitMinimally() {
        // More than 16 candidates (the greedy path): the victims free enough, and none is spare.
        let ps = (0..<20).map { Self.holding("p\($0)", Self.size(Int64(1 + $0 % 3), 100, 1), created: Int64($0 * 10)) }
        let running = ps.reduce(InstanceSize.zero) { $0 + $1.size }
        let cap = InstanceSize(vcpus: running.vcpus, memoryMB: 100_000, diskGB: 1000)
        let p = Self.plan([Self.instances("L", 2000, 3000, Self.size(7, 100, 1))], ps, capacity: cap)
        #expect(p.overcommitted.isEmpty)
        let victims = Set(p.decisions.map(\.preemptibleID))
        let freed = ps.filter { victims.contains($0.id) }.reduce(Int64(0)) { $0 + $1.size.vcpus }
        #expect(freed >= 7)
        for v in ps where victims.contains(v.id) { #expect(freed - v.size.vcpus < 7, "\(v.id) is not needed") }
        #expect(victims.count == 3, "three 3-vcpu victims are the fewest")
    }

    // MARK: - Backfill

    static func host(_ name: String, vcpus: Int64 = 16, gpus: [String] = []) -> Host {
        Host(
            name: name, vcpus: vcpus, memoryMB: 16_000, diskGB: 100, gpus: gpus.map(GPUSpec.init(model:)),
            createdAt: Timestamp(seconds: 0), updatedAt: Timestamp(seconds: 0))
    }

    static func lease(_ id: String, _ host: String, _ s: Int64, _ e: Int64, instance: InstanceSize? = nil) -> Lease {
        var req = ReservationRequest(hosts: 1)
        var alloc = Allocation(host: host)
        if let instance {
            req.kind = .instance
            req.vcpus = instance.vcpus
            req.memoryMB = instance.memoryMB
            req.diskGB = instance.diskGB
            alloc.slots = 1
        }
        return Lease(
            id: id, name: id, projectID: "p", userID: nil, start: Timestamp(seconds: s), end: Timestamp(seconds: e),
            beforeEndSeconds: nil, status: .pending,
            reservations: [Reservation(id: "\(id)-r", request: req, status: .pending, allocations: [alloc])],
            createdAt: Timestamp(seconds: 0))
    }

    static func backfill(
        _ s: InstanceSize = size(4), profile: String? = nil, window: Interval = Interval(start: 1000, end: 2000),
        hosts: [Host],
        _ cal: LeaseCalendar = LeaseCalendar()
    ) -> Result<PreemptionPlanner.Placement, PreemptionPlanner.BackfillFailure> {
        PreemptionPlanner.backfill(
            size: s, gpuProfile: profile, window: window, hosts: hosts, calendar: cal, models: .builtIn)
    }

    static func placedHost(_ r: Result<PreemptionPlanner.Placement, PreemptionPlanner.BackfillFailure>) -> String? {
        if case .success(let p) = r { return p.host }
        return nil
    }

    @Test func backfillRefusesAHostAReservationNeedsWithinTheMinimumLifetime() {
        var cal = LeaseCalendar()
        cal.add(Self.lease("soon", "a", 1500, 3000))  // inside [1000, 2000)
        cal.add(Self.lease("later", "b", 2000, 3000))  // touches its end only
        #expect(Self.placedHost(Self.backfill(hosts: [Self.host("a"), Self.host("b")], cal)) == "b")
        // Only the host with a reservation inside the window: busy.
        guard case .failure(.busy) = Self.backfill(hosts: [Self.host("a")], cal) else {
            Issue.record("expected busy")
            return
        }
        // A shorter minimum lifetime fits before it.
        #expect(
            Self.placedHost(Self.backfill(window: Interval(start: 1000, end: 1500), hosts: [Self.host("a")], cal))
                == "a")
    }

    @Test func backfillPrefersTheHostWhoseNextReservationIsLatest() {
        var cal = LeaseCalendar()
        cal.add(Self.lease("x", "a", 5000, 6000))
        cal.add(Self.lease("y", "b", 9000, 9500))
        cal.add(Self.lease("z", "c", 2500, 3000))
        let hosts = ["a", "b", "c"].map { Self.host($0) }
        #expect(Self.placedHost(Self.backfill(hosts: hosts, cal)) == "b")
        // A host with no reservation at all beats them all.
        #expect(Self.placedHost(Self.backfill(hosts: hosts + [Self.host("d")], cal)) == "d")
        // A past reservation does not count.
        var past = cal
        past.add(Self.lease("old", "d", 0, 900))
        #expect(Self.placedHost(Self.backfill(hosts: hosts + [Self.host("d")], past)) == "d")
    }

    @Test func backfillSharesAHostWithRoomAndCountsOtherPreemptibles() {
        var cal = LeaseCalendar()
        // An instance reservation inside the window leaves 8 vcpus on a; b has a 14-vcpu preemptible.
        cal.add(Self.lease("i", "a", 1200, 3000, instance: Self.size(8)))
        cal.add(
            Preemptible(
                id: "other", projectID: "p", size: Self.size(14), minLifetime: 100, host: "b",
                createdAt: Timestamp(seconds: 0)))
        let hosts = [Self.host("a"), Self.host("b")]
        #expect(Self.placedHost(Self.backfill(Self.size(8), hosts: hosts, cal)) == "a")
        guard case .failure(.busy) = Self.backfill(Self.size(9), hosts: hosts, cal) else {
            Issue.record("expected busy: 9 vcpus fit neither beside the reservation nor beside the other preemptible")
            return
        }
    }

    @Test func backfillRefusesWhatNoHostCouldEverHold() {
        let hosts = [Self.host("a"), Self.host("v100", gpus: ["V100-32GB"])]
        guard case .failure(.neverFits) = Self.backfill(Self.size(17), hosts: hosts) else {
            Issue.record("a preemptible larger than any host never fits")
            return
        }
        guard case .failure(.neverFits) = Self.backfill(profile: "1g.5gb", hosts: hosts) else {
            Issue.record("no host has a MIG GPU offering 1g.5gb")
            return
        }
        guard
            case .failure(.neverFits) = Self.backfill(
                profile: "no-such-profile", hosts: hosts + [Self.host("g", gpus: ["A100-40GB"])])
        else {
            Issue.record("an unknown profile never fits")
            return
        }
        var down = Self.host("big", vcpus: 64)
        down.state = .maintenance
        guard case .failure(.neverFits) = Self.backfill(Self.size(32), hosts: hosts + [down]) else {
            Issue.record("a host that is down is not eligible")
            return
        }
    }

    @Test func backfillPlacesAGpuSliceAndAvoidsTakenSlices() {
        var cal = LeaseCalendar()
        let hosts = [Self.host("g", gpus: ["A100-40GB"]), Self.host("cpu")]
        guard case .success(let first) = Self.backfill(profile: "3g.20gb", hosts: hosts, cal) else {
            Issue.record("expected a placement")
            return
        }
        #expect(first.host == "g")
        #expect(first.gpu == 0)
        #expect(first.sliceSize == 4)
        var p = Preemptible(
            id: "p1", projectID: "p", size: Self.size(1), gpuProfile: "3g.20gb", gpu: first.gpu, slot: first.slot,
            sliceSize: first.sliceSize, minLifetime: 100, host: "g", createdAt: Timestamp(seconds: 0))
        cal.add(p)
        guard case .success(let second) = Self.backfill(profile: "3g.20gb", hosts: hosts, cal) else {
            Issue.record("expected a placement on the other half")
            return
        }
        #expect(second.slot != first.slot)
        // With both halves taken: busy.
        cal.add(
            Preemptible(
                id: "p2", projectID: "p", size: Self.size(1), gpuProfile: "3g.20gb", gpu: second.gpu, slot: second.slot,
                sliceSize: second.sliceSize, minLifetime: 100, host: "g", createdAt: Timestamp(seconds: 0)))
        guard case .failure(.busy) = Self.backfill(profile: "3g.20gb", hosts: hosts, cal) else {
            Issue.record("expected busy")
            return
        }
        // Once p1 is scheduled to go before the window, its slices are free again.
        cal.remove(p)
        p.preemptAt = Timestamp(seconds: 900)
        cal.add(p)
        #expect(Self.placedHost(Self.backfill(profile: "3g.20gb", hosts: hosts, cal)) == "g")
        // A CPU-only preemptible avoids the GPU host when it can.
        #expect(Self.placedHost(Self.backfill(hosts: hosts, LeaseCalendar())) == "cpu")
    }

    // MARK: - Calendar views

    @Test func calendarViewsCountAPreemptibleDifferently() {
        var cal = LeaseCalendar()
        let p = Preemptible(
            id: "p", projectID: "x", size: Self.size(8), gpuProfile: "1g.5gb", gpu: 0, slot: 3, sliceSize: 1,
            minLifetime: 1000,
            host: "h", createdAt: Timestamp(seconds: 0))
        cal.add(p)
        #expect(cal.preemptibleEntries["h"] == 2)
        let before = Interval(start: 500, end: 1500), after = Interval(start: 1000, end: 2000)
        let farFuture = Interval(start: 1_000_000_000, end: 1_000_000_100)

        var occupying = cal
        occupying.preemptibleView = .occupying
        #expect(!occupying.isFree(host: "h", during: before))
        #expect(!occupying.isFree(host: "h", during: after))
        #expect(!occupying.isFree(host: "h", during: farFuture), "occupying: open-ended")
        #expect(occupying.instanceLoad(host: "h", during: farFuture)?.map { $0.vcpus } == [8])
        #expect(occupying.instanceLoad(host: "h", during: after)?.first?.interval.end == LeaseCalendar.openEnd)
        #expect(occupying.gpuOccupancy(host: "h", gpu: 0, during: farFuture)?.usedMask == 1 << 3)

        var guaranteed = cal
        guaranteed.preemptibleView = .guaranteedOnly
        #expect(!guaranteed.isFree(host: "h", during: before))
        #expect(guaranteed.isFree(host: "h", during: after), "past its guarantee it does not bind")
        #expect(guaranteed.instanceLoad(host: "h", during: after)?.isEmpty == true)
        #expect(
            guaranteed.instanceLoad(host: "h", during: before)?.map { $0.interval } == [Interval(start: 0, end: 1000)])
        #expect(guaranteed.gpuOccupancy(host: "h", gpu: 0, during: after)?.usedMask == 0)
        #expect(guaranteed.gpuOccupancy(host: "h", gpu: 0, during: before)?.usedMask == 1 << 3)
        var ends: [Int64] = []
        guaranteed.ends(host: "h", in: Interval(start: 0, end: 5000), into: &ends)
        #expect(ends == [1000, 1000])

        // Neither view makes it a reservation.
        #expect(cal.nextReservationStart(host: "h", atOrAfter: 0) == nil)
        #expect(cal.reservationHolders(host: "h", from: 0).isEmpty)
        cal.add(Self.lease("L", "h", 3000, 4000))
        #expect(cal.nextReservationStart(host: "h", atOrAfter: 0) == 3000)
        #expect(cal.reservationHolders(host: "h", from: 0).map { $0.entry.leaseID } == ["L"])

        // A planned preemption bounds it in both views; removing it leaves nothing behind.
        var scheduled = p
        scheduled.preemptAt = Timestamp(seconds: 1500)
        var moved = LeaseCalendar()
        moved.add(scheduled)
        #expect(moved.isFree(host: "h", during: Interval(start: 1500, end: 2000)))
        #expect(!moved.isFree(host: "h", during: Interval(start: 1400, end: 1600)))
        moved.remove(scheduled)
        #expect(moved.preemptibleEntries["h"] == nil)
        #expect(moved.isFree(host: "h", during: before))
    }
}
