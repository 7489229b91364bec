/// MIG slice placement on GPUs over time (pure: no I/O, no clock, no calendar access).
///
/// The planner describes, for one request window, what each candidate GPU already holds during that
/// window (`GPUOccupancy`), and asks where `count` instances of one profile go (`GPUPool.place`).
/// Placement follows NVIDIA's geometry exactly (see `data/gpu-models.json`): an instance occupies
/// memory slices `[start, start + size)`, `start` is one of its profile's allowed starts, instances
/// never overlap, at most one `+me` instance per GPU, at most `max_per_gpu` of a profile, and the
/// GPU's compute slices are never exceeded. The packing policy is described on `GPUPool` and in
/// docs/packing.md.

/// One MIG instance already placed on a GPU: when, which profile (by name, of that GPU's model),
/// which start slice.
public struct GPUSliceUse: Sendable, Hashable {
    public var interval: Interval
    public var profile: String
    public var slot: Int

    public init(interval: Interval, profile: String, slot: Int) {
        self.interval = interval
        self.profile = profile
        self.slot = slot
    }
}

/// What one GPU already holds during a request's window: the whole input of a placement decision.
///
/// A new instance holds its slices for the whole window, so a slice is free only if no instance
/// uses it at any instant of the window: `usedMask` is the union of the slices of every instance
/// that overlaps the window. The limits that count instances (`max_per_gpu`, one `+me`, compute
/// slices) are checked against the peak at any single instant, since instances that never coexist
/// do not add up.
public struct GPUOccupancy: Sendable, Hashable, CustomStringConvertible {
    /// Bit i set: memory slice i is used at some instant of the window.
    public var usedMask: UInt16
    /// Peak number of `+me` instances at any instant of the window.
    public var mediaExtensionCount: Int
    /// Peak number of instances of each profile (by name) at any instant of the window.
    public var profileCounts: [String: Int]
    /// Peak number of compute slices in use at any instant of the window.
    public var computeUsed: Int

    public init(
        usedMask: UInt16 = 0, mediaExtensionUsed: Bool = false, profileCounts: [String: Int] = [:], computeUsed: Int = 0
    ) {
        self.usedMask = usedMask
        self.mediaExtensionCount = mediaExtensionUsed ? 1 : 0
        self.profileCounts = profileCounts
        self.computeUsed = computeUsed
    }

    public static let empty = GPUOccupancy()

    /// Nothing fits: for a GPU whose host is reserved whole, down, or otherwise unavailable.
    public static func full(_ model: GPUModel) -> GPUOccupancy {
        GPUOccupancy(usedMask: model.fullMask, computeUsed: model.computeSlices)
    }

    /// From `LeaseCalendar.gpuOccupancy(host:gpu:during:)`'s answer: nil (the host is reserved
    /// whole) is a full GPU. Only the mask and the `+me` flag are known then, so `max_per_gpu` and the
    /// compute limit count just the instances placed in this round; for the built-in table that loses
    /// nothing, since its geometry alone keeps every profile within `max_per_gpu` (except `+me`,
    /// covered by the flag) and every GPU within its compute slices.
    public init(calendar answer: (usedMask: UInt16, hasMediaExtension: Bool)?, model: GPUModel) {
        if let answer {
            self.init(usedMask: answer.usedMask & model.fullMask, mediaExtensionUsed: answer.hasMediaExtension)
        } else {
            self = .full(model)
        }
    }

    /// Whether a `+me` instance exists on the GPU at some instant of the window.
    public var mediaExtensionUsed: Bool { mediaExtensionCount > 0 }

    /// No instance at all during the window.
    public var isEmpty: Bool { usedMask == 0 && computeUsed == 0 && mediaExtensionCount == 0 }

    /// Free memory slices of the GPU during the whole window.
    public func freeSlices(on model: GPUModel) -> Int { Int((model.fullMask & ~usedMask).nonzeroBitCount) }

    /// The occupancy of a GPU of `model` during `window`, from the instances placed on it (those that
    /// do not overlap the window are ignored). An instance whose profile the model does not know (the
    /// table changed under it) or whose slot is not a valid start is counted as using the whole GPU:
    /// when in doubt, do not double-book.
    public init(model: GPUModel, uses: [GPUSliceUse], window: Interval) {
        self.init()
        struct Event {
            var time: Int64
            var delta: Int
            var profile: String
            var compute: Int
            var me: Bool
        }
        var events: [Event] = []
        for u in uses where u.interval.overlaps(window) {
            guard let p = model.profile(named: u.profile), p.starts.contains(u.slot) else {
                usedMask = model.fullMask
                computeUsed = Swift.max(computeUsed, model.computeSlices)
                continue
            }
            usedMask |= p.mask(at: u.slot)
            let s = Swift.max(u.interval.start, window.start)
            let e = Swift.min(u.interval.end, window.end)
            events.append(Event(time: s, delta: 1, profile: p.name, compute: p.computeSlices, me: p.mediaExtensions))
            events.append(Event(time: e, delta: -1, profile: p.name, compute: p.computeSlices, me: p.mediaExtensions))
        }
        // Half-open intervals: at equal times ends go first, so back-to-back instances never coexist.
        events.sort { ($0.time, $0.delta) < ($1.time, $1.delta) }
        var counts: [String: Int] = [:]
        var compute = 0
        var me = 0
        for ev in events {
            counts[ev.profile, default: 0] += ev.delta
            compute += ev.delta * ev.compute
            if ev.me { me += ev.delta }
            if ev.delta > 0 {
                profileCounts[ev.profile] = Swift.max(profileCounts[ev.profile] ?? 0, counts[ev.profile]!)
                computeUsed = Swift.max(computeUsed, compute)
                mediaExtensionCount = Swift.max(mediaExtensionCount, me)
            }
        }
    }

    /// Records a new instance that holds `slot` for the whole window (so it adds to every peak).
    public mutating func add(_ profile: MIGProfile, at slot: Int) {
        usedMask |= profile.mask(at: slot)
        profileCounts[profile.name, default: 0] += 1
        computeUsed += profile.computeSlices
        if profile.mediaExtensions { mediaExtensionCount += 1 }
    }

    public var description: String {
        let bits = (0..<16).reversed().drop { usedMask >> UInt16($0) == 0 }.map {
            usedMask & (1 << UInt16($0)) != 0 ? "1" : "0"
        }
        return "used=0b\(bits.isEmpty ? "0" : bits.joined()) me=\(mediaExtensionCount) compute=\(computeUsed)"
    }
}

/// How to choose among the places that fit.
public enum PlacementPolicy: String, Sendable, CaseIterable {
    /// Berth's policy: keep the largest blocks free (see `GPUPool` and `InstanceFit`).
    case packing
    /// The lowest host, GPU and slot that fits: the baseline of the quality benchmark.
    case firstFit = "first_fit"
}

/// Where one MIG instance of a reservation goes: the contract's `{host, gpu, profile, slot}`, plus
/// the memory slices it spans (`Allocation.size`, so the calendar needs no model table).
public struct GPUSliceAssignment: Sendable, Hashable, CustomStringConvertible {
    public var host: String
    public var gpu: Int
    public var profile: String
    public var slot: Int
    /// Memory slices of the profile on this GPU's model (nil when not known, e.g. in a `keep` list
    /// built from old allocations; the pool fills it in).
    public var size: Int?

    public init(host: String, gpu: Int, profile: String, slot: Int, size: Int? = nil) {
        self.host = host
        self.gpu = gpu
        self.profile = profile
        self.slot = slot
        self.size = size
    }

    /// From a stored allocation; nil unless it has gpu, profile and slot.
    public init?(_ allocation: Allocation) {
        guard let gpu = allocation.gpu, let profile = allocation.profile, let slot = allocation.slot else { return nil }
        self.init(host: allocation.host, gpu: gpu, profile: profile, slot: slot, size: allocation.size)
    }

    public var allocation: Allocation { Allocation(host: host, gpu: gpu, profile: profile, slot: slot, size: size) }

    public var description: String { "\(host)/gpu\(gpu):\(profile)@\(slot)" }
}

/// The geometry rules for one GPU.
public enum MIGPlacement {
    /// Whether an instance of `profile` may start at `slot` on a GPU of `model` that holds
    /// `occupancy` during the window: `slot` is an allowed start, the slices are free, and the
    /// `max_per_gpu`, one-`+me` and compute-slice limits hold at every instant.
    public static func canPlace(_ profile: MIGProfile, at slot: Int, on model: GPUModel, occupancy: GPUOccupancy)
        -> Bool
    {
        guard model.mig, slot >= 0, slot + profile.size <= model.memorySlices, profile.starts.contains(slot) else {
            return false
        }
        return occupancy.usedMask & profile.mask(at: slot) == 0
            && admitsOneMore(profile, on: model, occupancy: occupancy)
    }

    /// The limits that do not depend on the slot.
    @inline(__always)
    static func admitsOneMore(_ profile: MIGProfile, on model: GPUModel, occupancy: GPUOccupancy) -> Bool {
        (occupancy.profileCounts[profile.name] ?? 0) < profile.maxPerGPU
            && !(profile.mediaExtensions && occupancy.mediaExtensionCount > 0)
            && occupancy.computeUsed + profile.computeSlices <= model.computeSlices
    }

    /// Every start slot at which one more instance of `profile` fits, ascending.
    public static func candidateSlots(_ profile: MIGProfile, on model: GPUModel, occupancy: GPUOccupancy) -> [Int] {
        guard model.mig, admitsOneMore(profile, on: model, occupancy: occupancy) else { return [] }
        return profile.starts.filter {
            $0 + profile.size <= model.memorySlices && occupancy.usedMask & profile.mask(at: $0) == 0
        }
    }

    /// How many more instances of `profile` (and nothing else) fit on the GPU. Exact because allowed
    /// starts are aligned (a multiple of the size, which the table enforces), so the profile's
    /// possible blocks are disjoint and each free one holds exactly one instance.
    public static func capacity(_ profile: MIGProfile, on model: GPUModel, occupancy: GPUOccupancy) -> Int {
        guard model.mig else { return 0 }
        var blocks = 0
        for s in profile.starts
        where s + profile.size <= model.memorySlices && occupancy.usedMask & profile.mask(at: s) == 0 {
            blocks += 1
        }
        var n = Swift.min(blocks, Swift.max(0, profile.maxPerGPU - (occupancy.profileCounts[profile.name] ?? 0)))
        if profile.mediaExtensions { n = Swift.min(n, occupancy.mediaExtensionCount > 0 ? 0 : 1) }
        return Swift.min(
            n, Swift.max(0, model.computeSlices - occupancy.computeUsed) / Swift.max(1, profile.computeSlices))
    }

    /// The size (in memory slices) of the largest profile that still fits, 0 if none does.
    public static func largestPlaceableSize(on model: GPUModel, occupancy: GPUOccupancy) -> Int {
        model.profiles.filter { capacity($0, on: model, occupancy: occupancy) > 0 }.map(\.size).max() ?? 0
    }

    /// What a GPU could still hold, per size class: entry c sums, over the model's profiles whose
    /// memory is 8, 4, 2, or 1 eighths of the GPU (c = 0...3), how many more instances of that profile
    /// would fit. Comparing before and after a placement gives its cost (`Capability.loss`).
    public struct Capability: Sendable, Hashable, Comparable, CustomStringConvertible {
        // Four stored classes rather than an array: this is compared in the allocator's inner loop.
        var c0 = 0, c1 = 0, c2 = 0, c3 = 0

        /// Whole GPU, half, quarter, eighth.
        public var classes: [Int] { [c0, c1, c2, c3] }

        init(c0: Int, c1: Int, c2: Int, c3: Int) { (self.c0, self.c1, self.c2, self.c3) = (c0, c1, c2, c3) }

        public init(_ classes: [Int]) {
            precondition(classes.count == 4, "a capability has four size classes")
            (c0, c1, c2, c3) = (classes[0], classes[1], classes[2], classes[3])
        }

        public init(model: GPUModel, occupancy: GPUOccupancy) {
            for p in model.profiles {
                let n = MIGPlacement.capacity(p, on: model, occupancy: occupancy)
                switch Capability.sizeClass(eighths: model.eighths(profile: p)) {
                case 0: c0 += n
                case 1: c1 += n
                case 2: c2 += n
                default: c3 += n
                }
            }
        }

        /// 0 for a whole GPU (8 eighths), 1 for a half, 2 for a quarter, 3 for an eighth.
        public static func sizeClass(eighths: Int) -> Int { eighths >= 8 ? 0 : eighths >= 4 ? 1 : eighths >= 2 ? 2 : 3 }

        public func loss(to after: Capability) -> Capability {
            Capability(c0: c0 - after.c0, c1: c1 - after.c1, c2: c2 - after.c2, c3: c3 - after.c3)
        }

        /// Lexicographic, largest class first: losing one whole-GPU place outweighs any number of
        /// smaller ones.
        public static func < (a: Capability, b: Capability) -> Bool {
            (a.c0, a.c1, a.c2, a.c3) < (b.c0, b.c1, b.c2, b.c3)
        }

        public var description: String { "[\(c0),\(c1),\(c2),\(c3)]" }
    }

    /// For one GPU, the best slot for `profile` under the packing policy and the cost of using it:
    /// the capability lost (smallest first), then the tightest fit in time (`sliceSlack`, summed over
    /// the slot's slices), then the highest slot. nil if nothing fits.
    public static func bestSlot(
        _ profile: MIGProfile, on model: GPUModel, occupancy: GPUOccupancy, sliceSlack: [Int64]? = nil
    ) -> (slot: Int, loss: Capability, timeSlack: Int64)? {
        let slots = candidateSlots(profile, on: model, occupancy: occupancy)
        guard !slots.isEmpty else { return nil }
        let before = Capability(model: model, occupancy: occupancy)
        var best: (slot: Int, loss: Capability, timeSlack: Int64)? = nil
        for s in slots.reversed() {  // highest first, so on equal keys the higher slot stays
            var o = occupancy
            o.add(profile, at: s)
            let loss = before.loss(to: Capability(model: model, occupancy: o))
            var t: Int64 = 0
            if let sliceSlack {
                for k in s..<(s + profile.size) where k < sliceSlack.count { t += sliceSlack[k] }
            }
            if let b = best, (loss, t) >= (b.loss, b.timeSlack) { continue }
            best = (s, loss, t)
        }
        return best
    }

    /// Per memory slice of a GPU, the free time before plus after `window` (each side capped at
    /// `cap`), from the instances on that GPU near the window: the input `GPUCandidate.sliceSlack`
    /// wants. Instances overlapping the window are ignored (their slices are not free anyway).
    public static func sliceSlack(
        around window: Interval, uses: [(interval: Interval, slot: Int, size: Int)], memorySlices: Int,
        cap: Int64 = 366 * 86_400
    ) -> [Int64] {
        var before = [Int64](repeating: cap, count: memorySlices)
        var after = [Int64](repeating: cap, count: memorySlices)
        for u in uses where !u.interval.overlaps(window) {
            for k in Swift.max(0, u.slot)..<Swift.min(memorySlices, u.slot + u.size) {
                if u.interval.end <= window.start { before[k] = Swift.min(before[k], window.start - u.interval.end) }
                if u.interval.start >= window.end { after[k] = Swift.min(after[k], u.interval.start - window.end) }
            }
        }
        return zip(before, after).map { $0 + $1 }
    }

    /// Chooses `count` instances of `profile` among `candidates` (see `GPUPool.place`); nil if they do
    /// not all fit.
    public static func choose(
        profile: String, count: Int, candidates: [GPUCandidate], policy: PlacementPolicy = .packing
    ) -> [GPUSliceAssignment]? {
        var pool = GPUPool(candidates)
        return pool.place(profile: profile, count: count, policy: policy)
    }
}

/// One GPU a request may use, with what it holds during the request's window.
public struct GPUCandidate: Sendable, Hashable {
    public var host: String
    public var gpuIndex: Int
    public var model: GPUModel
    public var occupancy: GPUOccupancy
    /// Free time around the window on this GPU (`LeaseCalendar.slack`-like; smaller is a tighter fit
    /// in time). A late tie-break only; 0 when unknown.
    public var slack: Int64
    /// Free time around the window on each memory slice (index = slice), capped like `slack`; nil
    /// when unknown. Between equally good slots, the one whose slices are tightest in time wins.
    public var sliceSlack: [Int64]?

    public init(
        host: String, gpuIndex: Int, model: GPUModel, occupancy: GPUOccupancy = .empty, slack: Int64 = 0,
        sliceSlack: [Int64]? = nil
    ) {
        self.host = host
        self.gpuIndex = gpuIndex
        self.model = model
        self.occupancy = occupancy
        self.slack = slack
        self.sliceSlack = sliceSlack
    }
}

/// The GPUs of a planning round (one window), placements committed as they are chosen so several
/// reservations of one lease see each other.
///
/// Packing policy (`.packing`), one instance at a time, each placement chosen by, in order:
///
/// 1. **Least capability lost.** For each GPU and allowed free slot, compare what the GPU could
///    still hold before and after (`MIGPlacement.Capability`: per size class, largest first, how many
///    more instances of each of its profiles would fit). Taking a slot on an empty GPU loses its only
///    whole-GPU (`7g`) place, so GPUs already partly used in the window are preferred; within a GPU,
///    a slot that keeps a `4g`/`3g`/`2g` place beats one that breaks it, and a slot in a block that is
///    already broken beats one in an intact block.
/// 2. **Tightest in time:** the slot whose slices have the least free time around the window
///    (`sliceSlack`, as `LeaseCalendar.slack` does for hosts), so long free runs stay whole.
/// 3. **Best fit:** fewest free memory eighths before the placement (the most used GPU).
/// 4. **Deterministic:** GPU `slack`, host name, GPU index, then the highest slot (small profiles
///    fill a GPU from the top, so slot 0, the only start of `4g` and `7g`, stays free longest).
///
/// `.firstFit` takes the lowest host, GPU index and slot that fits, for comparison.
public struct GPUPool: Sendable {
    /// In (host, GPU index) order, the tie-break order.
    public private(set) var gpus: [GPUCandidate]
    private var position: [Key: Int] = [:]

    private struct Key: Hashable, Sendable {
        var host: String
        var gpu: Int
    }

    /// Candidates listed twice (same host and index) keep their first entry.
    public init(_ candidates: [GPUCandidate]) {
        // Planners list candidates in order already: sort (and de-duplicate) only when needed.
        let ordered = zip(candidates, candidates.dropFirst()).allSatisfy { ($0.host, $0.gpuIndex) < ($1.host, $1.gpuIndex) }
        if ordered {
            gpus = candidates
        } else {
            var seen: Set<Key> = []
            gpus = candidates.filter { seen.insert(Key(host: $0.host, gpu: $0.gpuIndex)).inserted }
                .sorted { ($0.host, $0.gpuIndex) < ($1.host, $1.gpuIndex) }
        }
        for (i, g) in gpus.enumerated() { position[Key(host: g.host, gpu: g.gpuIndex)] = i }
    }

    public func gpu(host: String, index: Int) -> GPUCandidate? {
        position[Key(host: host, gpu: index)].map { gpus[$0] }
    }

    /// Free start slots for `profile` on one GPU, ascending ([] if the GPU or its profile is unknown).
    public func candidateSlots(profile: String, host: String, gpu: Int) -> [Int] {
        guard let g = self.gpu(host: host, index: gpu), let p = g.model.profile(named: profile) else { return [] }
        return MIGPlacement.candidateSlots(p, on: g.model, occupancy: g.occupancy)
    }

    public func canPlace(_ a: GPUSliceAssignment) -> Bool {
        guard let g = gpu(host: a.host, index: a.gpu), let p = g.model.profile(named: a.profile) else { return false }
        return MIGPlacement.canPlace(p, at: a.slot, on: g.model, occupancy: g.occupancy)
    }

    /// Records an instance (for the whole window) if it fits; false, and nothing changes, otherwise.
    @discardableResult
    public mutating func commit(_ a: GPUSliceAssignment) -> Bool {
        guard let i = position[Key(host: a.host, gpu: a.gpu)], let p = gpus[i].model.profile(named: a.profile),
            MIGPlacement.canPlace(p, at: a.slot, on: gpus[i].model, occupancy: gpus[i].occupancy)
        else { return false }
        gpus[i].occupancy.add(p, at: a.slot)
        return true
    }

    func eligible(profile: String, gpuModel: String?, hosts: Set<String>?) -> [Int] {
        gpus.indices.filter { i in
            let g = gpus[i]
            return (gpuModel == nil || g.model.name == gpuModel) && (hosts == nil || hosts!.contains(g.host))
                && g.model.profile(named: profile) != nil
        }
    }

    /// How many instances of `profile` (alone) still fit on the matching GPUs; with
    /// `ignoringOccupancy`, on empty GPUs: when that is below a request's count, no later start helps.
    public func capacity(
        profile: String, gpuModel: String? = nil, hosts: Set<String>? = nil, ignoringOccupancy: Bool = false
    )
        -> Int
    {
        eligible(profile: profile, gpuModel: gpuModel, hosts: hosts).reduce(0) { sum, i in
            let g = gpus[i]
            return sum
                + MIGPlacement.capacity(
                    g.model.profile(named: profile)!, on: g.model, occupancy: ignoringOccupancy ? .empty : g.occupancy)
        }
    }

    /// Places `count` instances of `profile` on GPUs whose model offers it (and is `gpuModel`, if
    /// given) on `hosts` (all, if nil), committing them; nil, and nothing changes, if they do not all
    /// fit. Entries of `keep` (a reservation's current placements, on lease updates) are kept first
    /// wherever they still fit.
    public mutating func place(
        profile: String, count: Int, gpuModel: String? = nil, hosts: Set<String>? = nil,
        policy: PlacementPolicy = .packing, keep: [GPUSliceAssignment] = []
    ) -> [GPUSliceAssignment]? {
        guard count > 0 else { return [] }
        var work = self
        var out: [GPUSliceAssignment] = []
        let eligible = work.eligible(profile: profile, gpuModel: gpuModel, hosts: hosts)
        let eligibleSet = Set(eligible)
        for var k in keep where out.count < count && k.profile == profile {
            guard let i = work.position[Key(host: k.host, gpu: k.gpu)], eligibleSet.contains(i), work.commit(k) else {
                continue
            }
            k.size = work.gpus[i].model.profile(named: profile)?.size
            out.append(k)
        }
        let remaining = count - out.count
        guard remaining > 0 else {
            self = work
            return out
        }
        guard work.capacity(profile: profile, gpuModel: gpuModel, hosts: hosts) >= remaining else { return nil }
        let placed: [GPUSliceAssignment]?
        switch policy {
        case .packing: placed = work.placePacking(profile: profile, count: remaining, eligible: eligible)
        case .firstFit: placed = work.placeFirstFit(profile: profile, count: remaining, eligible: eligible)
        }
        guard let placed else { return nil }
        self = work
        return out + placed
    }

    private mutating func placeFirstFit(profile: String, count: Int, eligible: [Int]) -> [GPUSliceAssignment]? {
        var out: [GPUSliceAssignment] = []
        for i in eligible {
            let p = gpus[i].model.profile(named: profile)!
            while out.count < count,
                let s = MIGPlacement.candidateSlots(p, on: gpus[i].model, occupancy: gpus[i].occupancy).first
            {
                gpus[i].occupancy.add(p, at: s)
                out.append(
                    GPUSliceAssignment(
                        host: gpus[i].host, gpu: gpus[i].gpuIndex, profile: profile, slot: s, size: p.size))
            }
            if out.count == count { return out }
        }
        return nil
    }

    /// The packing order of one GPU's best placement (see the type's documentation). `index` stands
    /// for (host, GPU index), since `gpus` is sorted that way.
    private struct PackingKey: Comparable {
        var loss: MIGPlacement.Capability
        var timeSlack: Int64
        var freeEighths: Int
        var slack: Int64
        var index: Int
        var slot: Int

        static func < (a: PackingKey, b: PackingKey) -> Bool {
            if a.loss != b.loss { return a.loss < b.loss }
            if a.timeSlack != b.timeSlack { return a.timeSlack < b.timeSlack }
            if a.freeEighths != b.freeEighths { return a.freeEighths < b.freeEighths }
            if a.slack != b.slack { return a.slack < b.slack }
            if a.index != b.index { return a.index < b.index }
            return a.slot > b.slot
        }
    }

    private mutating func placePacking(profile: String, count: Int, eligible: [Int]) -> [GPUSliceAssignment]? {
        // GPUs of one model with equal occupancy have the same best slot and loss: compute it once.
        struct Memo: Hashable {
            var model: String
            var occupancy: GPUOccupancy
            var sliceSlack: [Int64]?
        }
        var memo: [Memo: (slot: Int, loss: MIGPlacement.Capability, timeSlack: Int64)?] = [:]
        func evaluate(_ i: Int) -> PackingKey? {
            let g = gpus[i]
            let m = Memo(model: g.model.name, occupancy: g.occupancy, sliceSlack: g.sliceSlack)
            let best: (slot: Int, loss: MIGPlacement.Capability, timeSlack: Int64)?
            if let cached = memo[m] {
                best = cached
            } else {
                best = MIGPlacement.bestSlot(
                    g.model.profile(named: profile)!, on: g.model, occupancy: g.occupancy, sliceSlack: g.sliceSlack)
                memo[m] = .some(best)
            }
            guard let best else { return nil }
            let free = g.occupancy.freeSlices(on: g.model) * 8 / g.model.memorySlices
            return PackingKey(
                loss: best.loss, timeSlack: best.timeSlack, freeEighths: free, slack: g.slack, index: i, slot: best.slot
            )
        }
        var keys = [PackingKey?](repeating: nil, count: gpus.count)
        for i in eligible { keys[i] = evaluate(i) }
        var out: [GPUSliceAssignment] = []
        while out.count < count {
            var found: PackingKey? = nil
            for case let k? in keys where found == nil || k < found! { found = k }
            guard let best = found else { return nil }
            let i = best.index
            let p = gpus[i].model.profile(named: profile)!
            gpus[i].occupancy.add(p, at: best.slot)
            out.append(
                GPUSliceAssignment(
                    host: gpus[i].host, gpu: gpus[i].gpuIndex, profile: profile, slot: best.slot, size: p.size))
            keys[i] = evaluate(i)
        }
        return out
    }
}
