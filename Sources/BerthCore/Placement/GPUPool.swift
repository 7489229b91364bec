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
        let ordered = zip(candidates, candidates.dropFirst()).allSatisfy {
            ($0.host, $0.gpuIndex) < ($1.host, $1.gpuIndex)
        }
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
