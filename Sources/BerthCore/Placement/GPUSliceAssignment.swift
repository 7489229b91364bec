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
