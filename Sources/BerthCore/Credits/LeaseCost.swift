import BerthJSON

/// What a lease costs, in credits per resource class.
///
/// A lease's reservations give a *rate* per class, in units (hosts, GPU memory eighths, vCPUs):
/// - `host`: the hosts held (allocations; `min` before placement) → `host_hours`;
/// - `gpu`: per slice, the profile's memory in eighths of its GPU (`GPUModel.eighths(profile:)`,
///   a whole GPU is 8) → `gpu_slice_hours`;
/// - `instance`: `vcpus × count` → `vcpu_hours`, plus per instance the eighths of its
///   `gpu_profile` → `gpu_slice_hours`.
///
/// **Rounding rule.** Holding `u` units over a span of `s` seconds costs
///
///     C(u, s) = ceil(u × s × 1_000_000 / 3600) micro-credits  (= ceil(u × s × 2500 / 9))
///
/// computed once per resource class and span, never per reservation or per hour, so rounding adds
/// at most one micro-credit per class. Every later change is priced with the same formula from the
/// same origin `o` (the span's start): extending the end from `e` to `e'` charges
/// `C(e' − o) − C(e − o)`; shortening it (or ending early, or deleting) refunds
/// `C(e − o) − C(e' − o)`. Hence charge = cost(kept) + refund exactly, a lease deleted before its start
/// gets back exactly its charge, and extending then shortening back is a no-op on the balance.
/// Splitting a span into pieces (at grant validity boundaries) uses the cumulative form too:
/// piece `[a, b)` costs `C(b − o) − C(a − o)`, so pieces always sum to the whole.
public enum LeaseCost {
    public static let secondsPerHour: Int64 = 3600

    /// `ceil(units × seconds × 1_000_000 / 3600)` micro-credits; zero when `units` or `seconds` is not
    /// positive; nil if the result is beyond `CreditAmount.max`.
    public static func cost(units: Int64, seconds: Int64) -> CreditAmount? {
        guard units > 0, seconds > 0 else { return .zero }
        let (n, overflow) = (Int128(units) * Int128(seconds)).multipliedReportingOverflow(by: 2500)
        guard !overflow else { return nil }
        let micro = (n + 8) / 9
        guard micro <= Int128(Int64.max) else { return nil }
        return CreditAmount(micro: Int64(micro))
    }

    /// Cost of lease time `[from, to)` for a span whose rounding origin is `origin` (see the type's
    /// rounding rule): `C(to − origin) − C(from − origin)`.
    public static func cost(units: Int64, origin: Timestamp, from: Timestamp, to: Timestamp) -> CreditAmount? {
        guard to > from else { return .zero }
        guard let hi = cost(units: units, seconds: to - origin), let lo = cost(units: units, seconds: from - origin)
        else { return nil }
        return hi - lo
    }

    /// The error for a cost beyond the ledger's range (an absurdly long or large lease).
    static func outOfRange(_ resourceClass: ResourceClass) -> BerthError {
        BerthError(
            .policyViolation,
            "the lease's \(resourceClass.rawValue) cost exceeds the largest amount the ledger holds (\(CreditAmount.max) credits)",
            data: ["rule": "credit_range", "resource_class": .string(resourceClass.rawValue)])
    }

    /// Cost of holding `rates` over `[from, to)`: one `C(u, to − from)` per class with a positive rate.
    public static func cost(rates: [ResourceClass: Int64], from: Timestamp, to: Timestamp) throws(BerthError)
        -> [ResourceClass: CreditAmount]
    {
        var out: [ResourceClass: CreditAmount] = [:]
        for (c, u) in rates where u > 0 {
            guard let v = cost(units: u, seconds: to - from) else { throw outOfRange(c) }
            out[c] = v
        }
        return out
    }

    /// Cost of a lease's reservations over `[from, to)`. `gpuModelAt(host, gpuIndex)` names the model
    /// of a placed GPU (see `rates(of:models:gpuModelAt:)`).
    public static func cost(
        of reservations: [Reservation], from: Timestamp, to: Timestamp, models: GPUModelTable = .builtIn,
        gpuModelAt: (_ host: String, _ gpu: Int) -> String? = { _, _ in nil }
    ) throws(BerthError) -> [ResourceClass: CreditAmount] {
        try cost(rates: rates(of: reservations, models: models, gpuModelAt: gpuModelAt), from: from, to: to)
    }

    /// Cost of requests with their allocations (`allocations[i]` belongs to `requests[i]`; missing or
    /// empty means not placed yet) over `[from, to)`.
    public static func cost(
        of requests: [ReservationRequest], allocations: [[Allocation]], from: Timestamp, to: Timestamp,
        models: GPUModelTable = .builtIn, gpuModelAt: (_ host: String, _ gpu: Int) -> String? = { _, _ in nil }
    ) throws(BerthError) -> [ResourceClass: CreditAmount] {
        try cost(
            rates: rates(of: requests, allocations: allocations, models: models, gpuModelAt: gpuModelAt), from: from,
            to: to)
    }

    // MARK: - Rates

    /// Units per class held by a lease's reservations (classes with zero units are left out).
    public static func rates(
        of reservations: [Reservation], models: GPUModelTable = .builtIn,
        gpuModelAt: (_ host: String, _ gpu: Int) -> String? = { _, _ in nil }
    ) -> [ResourceClass: Int64] {
        rates(
            of: reservations.map(\.request), allocations: reservations.map(\.allocations), models: models,
            gpuModelAt: gpuModelAt)
    }

    /// Units per class of requests and their allocations (see `cost(of:allocations:...)`).
    public static func rates(
        of requests: [ReservationRequest], allocations: [[Allocation]], models: GPUModelTable = .builtIn,
        gpuModelAt: (_ host: String, _ gpu: Int) -> String? = { _, _ in nil }
    ) -> [ResourceClass: Int64] {
        var out: [ResourceClass: Int64] = [:]
        for (i, r) in requests.enumerated() {
            let allocs = i < allocations.count ? allocations[i] : []
            for (c, u) in rates(of: r, allocations: allocs, models: models, gpuModelAt: gpuModelAt) where u > 0 {
                out[c] = saturatingAdd(out[c] ?? 0, u)
            }
        }
        return out
    }

    /// Units per class of one request. Placed reservations are priced by what they hold: hosts by
    /// their host allocations, GPU slices by each slice's profile on its GPU's model.
    public static func rates(
        of r: ReservationRequest, allocations: [Allocation], models: GPUModelTable = .builtIn,
        gpuModelAt: (_ host: String, _ gpu: Int) -> String? = { _, _ in nil }
    ) -> [ResourceClass: Int64] {
        let gpuAllocs = allocations.filter { $0.gpu != nil }
        func sliceUnits(profile: String?) -> Int64 {
            gpuAllocs.reduce(Int64(0)) { sum, a in
                saturatingAdd(
                    sum,
                    Int64(
                        eighths(
                            profile: a.profile ?? profile ?? "", gpuModel: r.gpuModel, allocation: a, models: models,
                            gpuModelAt: gpuModelAt)))
            }
        }
        switch r.kind {
        case .host:
            let hosts = allocations.isEmpty ? r.min : Int64(allocations.count)
            return [.hostHours: hosts]
        case .gpu:
            let units =
                gpuAllocs.isEmpty
                ? saturatingMultiply(
                    r.min,
                    Int64(
                        eighths(
                            profile: r.profile ?? "", gpuModel: r.gpuModel, allocation: nil, models: models,
                            gpuModelAt: gpuModelAt)))
                : sliceUnits(profile: r.profile)
            return [.gpuSliceHours: units]
        case .instance:
            let slotAllocs = allocations.filter { $0.gpu == nil && $0.slots != nil }
            let count =
                slotAllocs.isEmpty ? r.min : slotAllocs.reduce(Int64(0)) { saturatingAdd($0, Int64($1.slots ?? 0)) }
            var out: [ResourceClass: Int64] = [.vcpuHours: saturatingMultiply(r.vcpus ?? 0, count)]
            if let profile = r.gpuProfile {
                out[.gpuSliceHours] =
                    gpuAllocs.isEmpty
                    ? saturatingMultiply(
                        count,
                        Int64(
                            eighths(
                                profile: profile, gpuModel: r.gpuModel, allocation: nil, models: models,
                                gpuModelAt: gpuModelAt)))
                    : sliceUnits(profile: profile)
            }
            return out
        }
    }

    /// Rates saturate instead of trapping: an absurd request then fails cleanly as out of range.
    static func saturatingAdd(_ a: Int64, _ b: Int64) -> Int64 {
        let (v, o) = a.addingReportingOverflow(b)
        return o ? .max : v
    }

    static func saturatingMultiply(_ a: Int64, _ b: Int64) -> Int64 {
        let (v, o) = a.multipliedReportingOverflow(by: b)
        return o ? .max : v
    }

    /// Eighths of a GPU one instance of `profile` occupies, resolving its model in this order:
    /// 1. the placed GPU's model (`gpuModelAt(host, gpu)`);
    /// 2. the request's `gpu_model`;
    /// 3. the slice's memory `size` when every model offering the profile has the same number of
    ///    memory slices (true of the built-in table: same-named profiles differ only in size);
    /// 4. the eighths every model offering the profile agrees on; failing that, the largest (a
    ///    conservative price for an unplaced request that could land on different models), and a
    ///    whole GPU (8) for a profile no model offers.
    public static func eighths(
        profile: String, gpuModel: String?, allocation: Allocation?, models: GPUModelTable,
        gpuModelAt: (_ host: String, _ gpu: Int) -> String?
    ) -> Int {
        if let a = allocation, let g = a.gpu, let name = gpuModelAt(a.host, g),
            let e = models.eighths(profile: profile, model: name)
        {
            return e
        }
        if let gpuModel, let e = models.eighths(profile: profile, model: gpuModel) { return e }
        let offering = models.models(offering: profile)
        if let size = allocation?.size, let first = offering.first,
            offering.allSatisfy({ $0.memorySlices == first.memorySlices })
        {
            return size * GPUModel.eighthsForWholeGPU / first.memorySlices
        }
        let all = offering.compactMap { $0.eighths(profile: profile) }
        return all.max() ?? GPUModel.eighthsForWholeGPU
    }

    /// A `gpuModelAt` lookup over a host inventory.
    public static func gpuModelLookup(_ hosts: [Host]) -> @Sendable (_ host: String, _ gpu: Int) -> String? {
        var byHost: [String: [String]] = [:]
        for h in hosts { byHost[h.name] = h.gpus.map(\.model) }
        let table = byHost
        return { host, gpu in
            guard let list = table[host], gpu >= 0, gpu < list.count else { return nil }
            return list[gpu]
        }
    }

    // MARK: - JSON

    /// `{ resource_class: amount }` as the lease's `cost` field and `lease.delete`'s `refund` show it.
    public static func json(_ cost: [ResourceClass: CreditAmount]) -> [String: JSON] {
        var o: [String: JSON] = [:]
        for (c, v) in cost { o[c.rawValue] = v.json }
        return o
    }

    /// Reads a `{ resource_class: amount }` object back (unknown classes and bad amounts are skipped).
    public static func parse(_ json: [String: JSON]) -> [ResourceClass: CreditAmount] {
        var out: [ResourceClass: CreditAmount] = [:]
        for (k, v) in json {
            guard let c = ResourceClass(rawValue: k), let a = try? CreditAmount(json: v) else { continue }
            out[c] = a
        }
        return out
    }
}
