/// MIG slice placement on GPUs over time (pure: no I/O, no clock, no calendar access).
///
/// The planner describes, for one request window, what each candidate GPU already holds during that
/// window (`GPUOccupancy`), and asks where `count` instances of one profile go (`GPUPool.place`).
/// Placement follows NVIDIA's geometry exactly (see `data/gpu-models.json`): an instance occupies
/// memory slices `[start, start + size)`, `start` is one of its profile's allowed starts, instances
/// never overlap, at most one `+me` instance per GPU, at most `max_per_gpu` of a profile, and the
/// GPU's compute slices are never exceeded. The packing policy is described on `GPUPool` and in
/// docs/packing.md.

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
