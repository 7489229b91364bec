import BerthJSON

/// One MIG GPU-instance profile of one GPU model (a row of `nvidia-smi mig -lgip`, with its
/// placements from `-lgipp`).
///
/// Placement is modelled on the memory-slice axis: an instance of this profile occupies the memory
/// slices `[start, start + size)` of its GPU, `start` must be one of `starts`, and instances on one
/// GPU never overlap. Names are per model: `1g.10gb` is a two-slice profile on an A100-40GB and a
/// one-slice profile on an A100-80GB, so a profile is always looked up through its model.
public struct MIGProfile: Sendable, Hashable, CustomStringConvertible {
    public var name: String
    /// NVIDIA's GPU-instance profile id (`nvidia-smi mig -cgi <id>`).
    public var id: Int
    /// Memory slices occupied.
    public var size: Int
    /// Compute (SM) slices used.
    public var computeSlices: Int
    /// Allowed start slices, ascending; every start is a multiple of `size` and `start + size` fits.
    public var starts: [Int]
    /// A `+me` (media extensions) profile: at most one such instance per GPU.
    public var mediaExtensions: Bool
    /// At most this many instances of this profile on one GPU at any instant.
    public var maxPerGPU: Int

    public init(
        name: String, id: Int, size: Int, computeSlices: Int, starts: [Int], mediaExtensions: Bool = false,
        maxPerGPU: Int? = nil
    ) {
        self.name = name
        self.id = id
        self.size = size
        self.computeSlices = computeSlices
        self.starts = starts.sorted()
        self.mediaExtensions = mediaExtensions
        self.maxPerGPU = maxPerGPU ?? starts.count
    }

    /// The memory slices an instance starting at `start` occupies, as a bitmask (bit i = slice i).
    @inlinable public func mask(at start: Int) -> UInt16 {
        UInt16(truncatingIfNeeded: ((1 << size) - 1) << start)
    }

    public var description: String { name }

    public var json: JSON {
        .object([
            "name": .string(name),
            "id": .int(Int64(id)),
            "size": .int(Int64(size)),
            "compute_slices": .int(Int64(computeSlices)),
            "starts": .array(starts.map { .int(Int64($0)) }),
            "media_extensions": .bool(mediaExtensions),
            "max_per_gpu": .int(Int64(maxPerGPU)),
        ])
    }
}

/// A GPU model: either MIG-capable (carved into memory slices along its profiles) or reserved whole.
public struct GPUModel: Sendable, Hashable, CustomStringConvertible {
    public var name: String
    /// Whether the model can be partitioned with MIG. Models without MIG are reserved whole only and
    /// have no profiles.
    public var mig: Bool
    public var memoryGB: Int?
    /// Memory slices of the placement axis: 8 (A100, H100), 4 (A30); 1 for a model reserved whole.
    public var memorySlices: Int
    /// Compute (SM) slices: 7 (A100, H100), 4 (A30); 1 for a model reserved whole. No instant may
    /// use more than this (the built-in placements never do; an operator's table might).
    public var computeSlices: Int
    /// In the order of the table (smallest first in the built-in one).
    public var profiles: [MIGProfile]

    public init(name: String, memoryGB: Int? = nil, memorySlices: Int, computeSlices: Int, profiles: [MIGProfile]) {
        self.name = name
        self.mig = true
        self.memoryGB = memoryGB
        self.memorySlices = memorySlices
        self.computeSlices = computeSlices
        self.profiles = profiles
    }

    /// A model without MIG: reserved whole only.
    public init(wholeOnly name: String, memoryGB: Int? = nil) {
        self.name = name
        self.mig = false
        self.memoryGB = memoryGB
        self.memorySlices = 1
        self.computeSlices = 1
        self.profiles = []
    }

    public var description: String { name }

    /// Every memory slice of the GPU.
    public var fullMask: UInt16 { UInt16(truncatingIfNeeded: (1 << memorySlices) - 1) }

    public func profile(named name: String) -> MIGProfile? { profiles.first { $0.name == name } }

    /// Memory slices a profile of this model occupies (nil if the model has no such profile).
    public func slices(ofProfile name: String) -> Int? { profile(named: name)?.size }

    /// `gpu_slice_hours` per hour of one instance: its memory in eighths of the GPU (`1g.5gb` on an
    /// A100-40GB is 1, `3g.20gb` is 4, `7g.40gb` is 8; on an A30, with 4 slices, `1g.6gb` is 2).
    public func eighths(profile: MIGProfile) -> Int { profile.size * 8 / memorySlices }

    public func eighths(profile name: String) -> Int? { profile(named: name).map { eighths(profile: $0) } }

    /// `gpu_slice_hours` per hour of a whole GPU, whatever the model.
    public static let eighthsForWholeGPU = 8

    public var json: JSON {
        var o: [String: JSON] = ["mig": .bool(mig)]
        if let memoryGB { o["memory_gb"] = .int(Int64(memoryGB)) }
        if mig {
            o["memory_slices"] = .int(Int64(memorySlices))
            o["compute_slices"] = .int(Int64(computeSlices))
            o["profiles"] = .array(profiles.map(\.json))
        }
        return .object(o)
    }
}

/// The GPU models Berth knows, loaded from a versioned JSON document:
///
/// ```json
/// {"version": 1, "models": {
///   "A100-40GB": {"mig": true, "memory_gb": 40, "memory_slices": 8, "compute_slices": 7, "profiles": [
///     {"name": "1g.5gb", "id": 19, "size": 1, "compute_slices": 1, "starts": [0, 1, 2, 3, 4, 5, 6],
///      "media_extensions": false, "max_per_gpu": 7}, ...]},
///   "V100-32GB": {"mig": false, "memory_gb": 32}}}
/// ```
///
/// The project's table is `data/gpu-models.json` (embedded as `builtIn`); an operator adds or
/// replaces models through config with `builtIn.merging(GPUModelTable(json: theirs))`, no release
/// needed.
public struct GPUModelTable: Sendable, Hashable {
    /// The only document version this Berth reads.
    public static let supportedVersion = 1

    public var version: Int
    public private(set) var models: [String: GPUModel]

    public init(version: Int = GPUModelTable.supportedVersion, models: [GPUModel]) {
        self.version = version
        var m: [String: GPUModel] = [:]
        for model in models { m[model.name] = model }
        self.models = m
    }

    /// The table shipped with Berth (`data/gpu-models.json`, embedded by scripts/gen_gpu_models_swift.py).
    public static let builtIn: GPUModelTable = {
        do {
            return try GPUModelTable(jsonText: builtInGPUModelTableJSONText, path: "data/gpu-models.json")
        } catch {
            fatalError("the built-in GPU model table is invalid: \(error)")
        }
    }()

    /// Model names in sorted order.
    public var modelNames: [String] { models.keys.sorted() }

    public func model(named name: String) -> GPUModel? { models[name] }

    public func profile(_ name: String, model: String) -> MIGProfile? { models[model]?.profile(named: name) }

    /// Memory slices of `profile` on `model`, nil if either is unknown.
    public func slices(ofProfile name: String, model: String) -> Int? { models[model]?.slices(ofProfile: name) }

    /// `gpu_slice_hours` per hour of one instance of `profile` on `model` (see `GPUModel.eighths`).
    public func eighths(profile name: String, model: String) -> Int? { models[model]?.eighths(profile: name) }

    /// `gpu_slice_hours` per hour of a whole GPU, whatever the model.
    public static let eighthsForWholeGPU = GPUModel.eighthsForWholeGPU

    /// This table with `other`'s models added, a model of the same name replaced by `other`'s.
    public func merging(_ other: GPUModelTable) -> GPUModelTable {
        var out = self
        for (name, model) in other.models { out.models[name] = model }
        out.version = Swift.max(version, other.version)
        return out
    }

    /// MIG models that offer a profile of this name, in name order.
    public func models(offering profile: String) -> [GPUModel] {
        modelNames.compactMap { models[$0] }.filter { $0.profile(named: profile) != nil }
    }

    /// Every profile name of every model, sorted and without duplicates.
    public var profileNames: [String] { Set(models.values.flatMap { $0.profiles.map(\.name) }).sorted() }

    /// Checks a `kind: "gpu"` request's `profile` and optional `gpu_model` and returns the models it
    /// may be placed on (never empty). `path` is the reservation's path, e.g. `reservations[0]`; the
    /// error is -32602 naming the bad field: unknown model, model without MIG, profile the model does
    /// not offer, or unknown profile.
    public func resolve(profile: String, gpuModel: String?, path: String = "") throws(BerthError) -> [GPUModel] {
        func at(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }
        if let gpuModel {
            guard let model = models[gpuModel] else {
                throw .invalidParam(
                    at("gpu_model"),
                    "unknown GPU model \"\(gpuModel)\"; known models: \(modelNames.joined(separator: ", "))")
            }
            guard model.mig else {
                throw .invalidParam(
                    at("profile"),
                    "GPU model \(gpuModel) has no MIG and is reserved whole only, so it has no profile \"\(profile)\"")
            }
            guard model.profile(named: profile) != nil else {
                throw .invalidParam(
                    at("profile"),
                    "profile \"\(profile)\" is not offered by \(gpuModel); its profiles are \(model.profiles.map(\.name).joined(separator: ", "))"
                )
            }
            return [model]
        }
        let offering = models(offering: profile)
        guard !offering.isEmpty else {
            throw .invalidParam(
                at("profile"),
                "unknown MIG profile \"\(profile)\"; known profiles: \(profileNames.joined(separator: ", "))")
        }
        return offering
    }

    public var json: JSON {
        .object(["version": .int(Int64(version)), "models": .object(models.mapValues(\.json))])
    }

    // MARK: - Loading and validation

    /// Parses JSON text (a file's contents). Syntax errors are reported at `path` like the rest.
    public init(jsonText: String, path: String = "") throws(BerthError) {
        let json: JSON
        do {
            json = try JSONParser.parse(jsonText)
        } catch {
            throw .invalidParam(path.isEmpty ? "gpu_models" : path, "not valid JSON: \(error)")
        }
        try self.init(json: json, path: path)
    }

    /// Parses and validates a model table, reporting every problem at once (-32602 with one entry per
    /// bad field, paths such as `models.A100-40GB.profiles[2].starts[1]` under `path`).
    public init(json: JSON, path: String = "") throws(BerthError) {
        var r = ParamReader(json, path: path)
        if !r.errors.isEmpty { throw .invalidParams(r.errors) }  // not an object
        var errors: [BerthError.FieldError] = []
        if let v = r.int("version", required: true), v != Int64(GPUModelTable.supportedVersion) {
            r.fail("version", "unsupported version \(v): this Berth reads version \(GPUModelTable.supportedVersion)")
        }
        _ = r.string("source", maxLength: 4096)
        _ = r.string("description", maxLength: 4096)
        var parsed: [GPUModel] = []
        if let m = r.raw("models") {
            if let o = m.objectValue {
                for name in o.keys.sorted() {
                    let modelPath = r.fieldPath("models") + "." + name
                    if name.isEmpty || name.utf8.count > 64
                        || name.contains(where: { $0 == " " || $0 == "\t" || $0 == "\n" })
                    {
                        errors.append(
                            .init(path: modelPath, message: "a model name must be 1 to 64 bytes without spaces"))
                        continue
                    }
                    if let model = Self.parseModel(name: name, o[name]!, path: modelPath, errors: &errors) {
                        parsed.append(model)
                    }
                }
            } else {
                r.fail("models", "expected an object of models by name, got \(m.typeName)")
            }
        } else {
            r.fail("models", "is required")
        }
        r.rejectUnknown()
        let all = r.errors + errors
        if !all.isEmpty { throw .invalidParams(all) }
        self.init(models: parsed)
    }

    static func parseModel(name: String, _ json: JSON, path: String, errors: inout [BerthError.FieldError]) -> GPUModel?
    {
        var r = ParamReader(json, path: path)
        defer { errors.append(contentsOf: r.errors) }
        guard r.errors.isEmpty else { return nil }
        let mig = r.bool("mig")
        if !r.has("mig") { r.fail("mig", "is required (true for a MIG-capable model, false for one reserved whole)") }
        let memoryGB = r.int("memory_gb", min: 1, max: 1_000_000).map { Int($0) }
        guard let mig else { return nil }  // unknown fields are not worth reporting before this
        if !mig {
            for key in ["memory_slices", "compute_slices", "profiles"] where r.has(key) {
                _ = r.raw(key)
                r.fail(
                    key, "a model without MIG is reserved whole and has no \(key == "profiles" ? "profiles" : "slices")"
                )
            }
            r.rejectUnknown()
            return r.errors.isEmpty ? GPUModel(wholeOnly: name, memoryGB: memoryGB) : nil
        }
        let slices = r.int("memory_slices", required: true).map { Int($0) }
        if let s = slices, ![1, 2, 4, 8].contains(s) {
            r.fail(
                "memory_slices",
                "must be 1, 2, 4 or 8 (gpu_slice_hours counts memory in eighths of a GPU), got \(s)")
        }
        let compute = r.int("compute_slices", required: true, min: 1, max: 64).map { Int($0) }
        let list = r.array("profiles", required: true)
        r.rejectUnknown()
        guard let list, let slices, [1, 2, 4, 8].contains(slices), let compute else { return nil }
        if list.isEmpty { r.fail("profiles", "a MIG model needs at least one profile") }
        var profiles: [MIGProfile] = []
        var names: Set<String> = []
        var ids: Set<Int> = []
        for (k, p) in list.enumerated() {
            let ppath = "\(r.fieldPath("profiles"))[\(k)]"
            var pe: [BerthError.FieldError] = []
            if let profile = parseProfile(p, path: ppath, memorySlices: slices, computeSlices: compute, errors: &pe) {
                if !names.insert(profile.name).inserted {
                    pe.append(
                        .init(path: "\(ppath).name", message: "duplicate profile name \"\(profile.name)\" in \(name)"))
                }
                if !ids.insert(profile.id).inserted {
                    pe.append(.init(path: "\(ppath).id", message: "duplicate profile id \(profile.id) in \(name)"))
                }
                if pe.isEmpty { profiles.append(profile) }
            }
            r.merge(pe)
        }
        guard r.errors.isEmpty else { return nil }
        return GPUModel(
            name: name, memoryGB: memoryGB, memorySlices: slices, computeSlices: compute, profiles: profiles)
    }

    static func parseProfile(
        _ json: JSON, path: String, memorySlices: Int, computeSlices: Int, errors: inout [BerthError.FieldError]
    ) -> MIGProfile? {
        var r = ParamReader(json, path: path)
        defer { errors.append(contentsOf: r.errors) }
        guard r.errors.isEmpty else { return nil }
        let name = r.string("name", required: true, maxLength: 64)
        let id = r.int("id", required: true, min: 0, max: 1_000_000).map { Int($0) }
        let size = r.int("size", required: true, min: 1, max: Int64(memorySlices)).map { Int($0) }
        let compute = r.int("compute_slices", required: true, min: 1, max: Int64(computeSlices)).map { Int($0) }
        let me = r.bool("media_extensions") ?? false
        let maxPer = r.int("max_per_gpu", min: 1, max: Int64(memorySlices)).map { Int($0) }
        var starts: [Int] = []
        if let list = r.array("starts", required: true) {
            if list.isEmpty { r.fail("starts", "needs at least one allowed start slice") }
            for (k, v) in list.enumerated() {
                let spath = "\(r.fieldPath("starts"))[\(k)]"
                guard let s = v.intValue else {
                    r.fail(path: spath, "expected an integer, got \(v.typeName)")
                    continue
                }
                guard s >= 0 && s < Int64(memorySlices) else {
                    r.fail(path: spath, "start \(s) is outside the GPU's memory slices 0...\(memorySlices - 1)")
                    continue
                }
                let start = Int(s)
                if let size {
                    if start % size != 0 {
                        r.fail(
                            path: spath,
                            "start \(start) is not aligned: a size-\(size) profile must start at a multiple of \(size)")
                        continue
                    }
                    if start + size > memorySlices {
                        r.fail(
                            path: spath,
                            "start \(start) with size \(size) runs past the last memory slice (\(memorySlices - 1))")
                        continue
                    }
                }
                if starts.contains(start) {
                    r.fail(path: spath, "duplicate start \(start)")
                    continue
                }
                starts.append(start)
            }
        }
        r.rejectUnknown()
        guard r.errors.isEmpty, let name, let id, let size, let compute else { return nil }
        return MIGProfile(
            name: name, id: id, size: size, computeSlices: compute, starts: starts, mediaExtensions: me,
            maxPerGPU: maxPer ?? starts.count)
    }
}
