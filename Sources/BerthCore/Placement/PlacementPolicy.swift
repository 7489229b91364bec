/// How to choose among the places that fit.
public enum PlacementPolicy: String, Sendable, CaseIterable {
    /// Berth's policy: keep the largest blocks free (see `GPUPool` and `InstanceFit`).
    case packing
    /// The lowest host, GPU and slot that fits: the baseline of the quality benchmark.
    case firstFit = "first_fit"
}
