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
