import BerthJSON
import Foundation
import Testing

@testable import BerthCore

@Suite struct GPUModelTests {
    static let table = GPUModelTable.builtIn

    /// NVIDIA's placement table (the MIG user guide, as data/gpu-models.json records it), identical axis for the three 8-slice models:
    /// (id, 40GB name, 80GB name, size, compute, starts, max per GPU, +me).
    static let specRows: [(Int, String, String, Int, Int, [Int], Int, Bool)] = [
        (19, "1g.5gb", "1g.10gb", 1, 1, [0, 1, 2, 3, 4, 5, 6], 7, false),
        (20, "1g.5gb+me", "1g.10gb+me", 1, 1, [0, 1, 2, 3, 4, 5, 6], 1, true),
        (15, "1g.10gb", "1g.20gb", 2, 1, [0, 2, 4, 6], 4, false),
        (14, "2g.10gb", "2g.20gb", 2, 2, [0, 2, 4], 3, false),
        (9, "3g.20gb", "3g.40gb", 4, 3, [0, 4], 2, false),
        (5, "4g.20gb", "4g.40gb", 4, 4, [0], 1, false),
        (0, "7g.40gb", "7g.80gb", 8, 7, [0], 1, false),
    ]

    @Test func builtInMatchesTheSpecTable() throws {
        #expect(Self.table.version == 1)
        #expect(Self.table.modelNames == ["A100-40GB", "A100-80GB", "A30-24GB", "H100-80GB", "L40S-48GB", "V100-32GB"])
        for (modelName, use80) in [("A100-40GB", false), ("A100-80GB", true), ("H100-80GB", true)] {
            let model = try #require(Self.table.model(named: modelName))
            #expect(model.mig && model.memorySlices == 8 && model.computeSlices == 7)
            #expect(model.profiles.count == Self.specRows.count)
            for (id, n40, n80, size, compute, starts, maxPer, me) in Self.specRows {
                let name = use80 ? n80 : n40
                let p = try #require(model.profile(named: name), "\(modelName) lacks \(name)")
                #expect(p.id == id && p.size == size && p.computeSlices == compute, "\(modelName) \(name)")
                #expect(p.starts == starts && p.maxPerGPU == maxPer && p.mediaExtensions == me, "\(modelName) \(name)")
            }
        }
    }

    @Test func theOneG10GBTrap() {
        #expect(Self.table.slices(ofProfile: "1g.10gb", model: "A100-40GB") == 2)
        #expect(Self.table.slices(ofProfile: "1g.10gb", model: "A100-80GB") == 1)
        #expect(Self.table.slices(ofProfile: "1g.10gb", model: "H100-80GB") == 1)
        #expect(Self.table.slices(ofProfile: "1g.5gb", model: "A100-40GB") == 1)
        #expect(Self.table.slices(ofProfile: "1g.5gb", model: "H100-80GB") == nil)
        #expect(Self.table.models(offering: "1g.10gb").map(\.name) == ["A100-40GB", "A100-80GB", "H100-80GB"])
    }

    @Test func a30() throws {
        let a30 = try #require(Self.table.model(named: "A30-24GB"))
        #expect(a30.memorySlices == 4 && a30.computeSlices == 4 && a30.memoryGB == 24)
        let rows: [(String, Int, Int, [Int], Bool, Int)] = [
            ("1g.6gb", 14, 1, [0, 1, 2, 3], false, 4), ("1g.6gb+me", 21, 1, [0, 1, 2, 3], true, 1),
            ("2g.12gb", 5, 2, [0, 2], false, 2), ("2g.12gb+me", 6, 2, [0, 2], true, 1),
            ("4g.24gb", 0, 4, [0], false, 1),
        ]
        #expect(a30.profiles.map(\.name) == rows.map(\.0))
        for (name, id, size, starts, me, maxPer) in rows {
            let p = try #require(a30.profile(named: name))
            #expect(
                p.id == id && p.size == size && p.starts == starts && p.mediaExtensions == me && p.maxPerGPU == maxPer)
        }
    }

    @Test func creditsCountEighthsOfTheGPU() {
        let t = Self.table
        #expect(t.eighths(profile: "1g.5gb", model: "A100-40GB") == 1)
        #expect(t.eighths(profile: "1g.10gb", model: "A100-40GB") == 2)
        #expect(t.eighths(profile: "3g.20gb", model: "A100-40GB") == 4)
        #expect(t.eighths(profile: "7g.40gb", model: "A100-40GB") == 8)
        #expect(t.eighths(profile: "1g.10gb", model: "H100-80GB") == 1)
        #expect(t.eighths(profile: "1g.6gb", model: "A30-24GB") == 2)
        #expect(t.eighths(profile: "2g.12gb", model: "A30-24GB") == 4)
        #expect(t.eighths(profile: "4g.24gb", model: "A30-24GB") == 8)
        #expect(t.eighths(profile: "1g.5gb", model: "V100-32GB") == nil)
        #expect(GPUModelTable.eighthsForWholeGPU == 8 && GPUModel.eighthsForWholeGPU == 8)
    }

    @Test func wholeGPUModelsHaveNoProfiles() throws {
        for name in ["V100-32GB", "L40S-48GB"] {
            let m = try #require(Self.table.model(named: name))
            #expect(!m.mig && m.profiles.isEmpty && m.memorySlices == 1)
            #expect(Self.table.profile("1g.5gb", model: name) == nil)
            #expect(Self.table.profile("7g.40gb", model: name) == nil)
        }
        #expect(Self.table.model(named: "V100-32GB")?.memoryGB == 32)
    }

    /// The embedded text is the JSON file (scripts/gen_gpu_models_swift.py ran after the last edit).
    @Test func embeddedTableIsTheDataFile() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        let text = try String(contentsOf: root.appendingPathComponent("data/gpu-models.json"), encoding: .utf8)
        #expect(try JSONParser.parse(text) == JSONParser.parse(builtInGPUModelTableJSONText))
        #expect(try GPUModelTable(jsonText: text) == Self.table)
    }

    @Test func jsonRoundTrips() throws {
        #expect(try GPUModelTable(json: Self.table.json) == Self.table)
    }

    // MARK: - Validation

    static func errors(_ json: JSON) -> [BerthError.FieldError] {
        do {
            _ = try GPUModelTable(json: json, path: "gpu_models")
            return []
        } catch {
            #expect(error.code == .invalidParams)
            return error.fieldErrors
        }
    }

    static func profile(
        _ name: String = "1g", id: JSON = 1, size: JSON = 1, compute: JSON = 1, starts: JSON = [0, 1],
        extra: [String: JSON] = [:]
    ) -> JSON {
        var o: [String: JSON] = [
            "name": .string(name), "id": id, "size": size, "compute_slices": compute, "starts": starts,
        ]
        for (k, v) in extra { o[k] = v }
        return .object(o)
    }

    static func doc(slices: JSON = 4, compute: JSON = 4, profiles: [JSON], version: JSON = 1) -> JSON {
        [
            "version": version,
            "models": [
                "X": ["mig": true, "memory_slices": slices, "compute_slices": compute, "profiles": .array(profiles)]
            ],
        ]
    }

    @Test func aValidMinimalTableLoads() throws {
        let t = try GPUModelTable(
            json: Self.doc(profiles: [Self.profile(), Self.profile("2g", id: 2, size: 2, compute: 2, starts: [2, 0])]))
        let m = try #require(t.model(named: "X"))
        #expect(m.profile(named: "2g")?.starts == [0, 2])
        #expect(m.profile(named: "1g")?.maxPerGPU == 2)  // defaults to the number of starts
        #expect(m.profile(named: "1g")?.mediaExtensions == false)
    }

    @Test func misalignedAndOutOfRangeStartsAreNamed() {
        let e = Self.errors(Self.doc(profiles: [Self.profile("2g", id: 2, size: 2, compute: 2, starts: [0, 1, 2, 4])]))
        #expect(
            e.map(\.path) == ["gpu_models.models.X.profiles[0].starts[1]", "gpu_models.models.X.profiles[0].starts[3]"])
        #expect(e[0].message.contains("not aligned"))
        #expect(e[1].message.contains("outside"))
        let e2 = Self.errors(
            Self.doc(profiles: [Self.profile("4g", id: 4, size: 4, compute: 4, starts: [0])], version: 1))
        #expect(e2.isEmpty)
        let e3 = Self.errors(
            Self.doc(
                slices: 8, compute: 7, profiles: [Self.profile("4g", id: 4, size: 4, compute: 4, starts: [0, 4, 4])]))
        #expect(e3.map(\.message) == ["duplicate start 4"])
    }

    @Test func sizeComputeAndSlicesAreChecked() {
        #expect(
            Self.errors(Self.doc(profiles: [Self.profile(size: 0)])).map(\.path) == [
                "gpu_models.models.X.profiles[0].size"
            ])
        #expect(Self.errors(Self.doc(profiles: [Self.profile(size: 5)])).first?.message == "must be at most 4, got 5")
        #expect(
            Self.errors(Self.doc(profiles: [Self.profile(compute: 5)])).map(\.path) == [
                "gpu_models.models.X.profiles[0].compute_slices"
            ])
        let e = Self.errors(Self.doc(slices: 3, profiles: [Self.profile()]))
        #expect(e.map(\.path) == ["gpu_models.models.X.memory_slices"])
        #expect(e.first?.message.contains("eighths") == true)
        #expect(Self.errors(Self.doc(profiles: [])).map(\.path) == ["gpu_models.models.X.profiles"])
        #expect(
            Self.errors(Self.doc(profiles: [Self.profile(starts: [])])).map(\.path) == [
                "gpu_models.models.X.profiles[0].starts"
            ])
        #expect(
            Self.errors(Self.doc(profiles: [Self.profile(starts: [0.5])])).map(\.path) == [
                "gpu_models.models.X.profiles[0].starts[0]"
            ])
    }

    @Test func duplicatesUnknownFieldsAndVersion() {
        let dup = Self.errors(Self.doc(profiles: [Self.profile(), Self.profile(id: 2), Self.profile("b", id: 1)]))
        #expect(dup.map(\.path) == ["gpu_models.models.X.profiles[1].name", "gpu_models.models.X.profiles[2].id"])
        let unknown = Self.errors(Self.doc(profiles: [Self.profile(extra: ["sise": 1])]))
        #expect(
            unknown.map(\.path) == ["gpu_models.models.X.profiles[0].sise"] && unknown[0].message == "unknown field")
        let v = Self.errors(Self.doc(profiles: [Self.profile()], version: 2))
        #expect(v.map(\.path) == ["gpu_models.version"] && v[0].message.contains("unsupported version 2"))
        #expect(Self.errors(["version": 1]).map(\.path) == ["gpu_models.models"])
        #expect(Self.errors(["version": 1, "models": []]).map(\.path) == ["gpu_models.models"])
        #expect(
            Self.errors(["version": 1, "models": ["X": ["memory_gb": 8]]]).map(\.path) == ["gpu_models.models.X.mig"])
        #expect(Self.errors("nope").map(\.path) == ["gpu_models"])
    }

    @Test func wholeModelsMustNotDeclareSlices() {
        let e = Self.errors([
            "version": 1, "models": ["W": ["mig": false, "profiles": [Self.profile()], "memory_slices": 8]],
        ])
        #expect(e.map(\.path) == ["gpu_models.models.W.memory_slices", "gpu_models.models.W.profiles"])
        #expect(e.allSatisfy { $0.message.contains("reserved whole") })
    }

    @Test func everyProblemIsReportedAtOnce() {
        let e = Self.errors([
            "version": 1,
            "models": [
                "A": [
                    "mig": true, "memory_slices": 8, "compute_slices": 7,
                    "profiles": [Self.profile(size: 2, starts: [1])],
                ],
                "B": ["mig": "yes"],
            ],
        ])
        #expect(e.map(\.path) == ["gpu_models.models.A.profiles[0].starts[0]", "gpu_models.models.B.mig"])
    }

    @Test func syntaxErrorsAreInvalidParams() {
        #expect(throws: BerthError.self) { try GPUModelTable(jsonText: "{\"version\": 1,", path: "gpu_models_file") }
        do {
            _ = try GPUModelTable(jsonText: "{", path: "gpu_models_file")
        } catch {
            #expect(error.code == .invalidParams && error.fieldErrors.first?.path == "gpu_models_file")
        }
    }

    // MARK: - Merging and resolving requests

    @Test func operatorTablesAddAndOverrideModels() throws {
        let theirs = try GPUModelTable(json: [
            "version": 1,
            "models": [
                "A30-24GB": ["mig": false, "memory_gb": 24],  // this site does not partition its A30s
                "A800-40GB": [
                    "mig": true, "memory_slices": 8, "compute_slices": 7,
                    "profiles": [Self.profile("1g.5gb", id: 19, starts: [0, 1, 2, 3, 4, 5, 6])],
                ],
            ],
        ])
        let merged = Self.table.merging(theirs)
        #expect(
            merged.modelNames == [
                "A100-40GB", "A100-80GB", "A30-24GB", "A800-40GB", "H100-80GB", "L40S-48GB", "V100-32GB",
            ])
        #expect(merged.model(named: "A30-24GB")?.mig == false)
        #expect(merged.profile("1g.5gb", model: "A800-40GB")?.starts == [0, 1, 2, 3, 4, 5, 6])
        #expect(merged.models(offering: "1g.5gb").map(\.name) == ["A100-40GB", "A800-40GB"])
        #expect(merged.model(named: "A100-40GB") == Self.table.model(named: "A100-40GB"))
        #expect(Self.table.model(named: "A30-24GB")?.mig == true)  // the original is untouched
    }

    @Test func resolvingRequestsNamesTheProblem() throws {
        let t = Self.table
        #expect(try t.resolve(profile: "1g.5gb", gpuModel: nil).map(\.name) == ["A100-40GB"])
        #expect(try t.resolve(profile: "3g.40gb", gpuModel: "H100-80GB").map(\.name) == ["H100-80GB"])
        func failure(_ profile: String, _ model: String?) -> BerthError.FieldError? {
            do {
                _ = try t.resolve(profile: profile, gpuModel: model, path: "reservations[0]")
                return nil
            } catch {
                #expect(error.code == .invalidParams)
                return error.fieldErrors.first
            }
        }
        let unknown = failure("9g.1tb", nil)
        #expect(
            unknown?.path == "reservations[0].profile"
                && unknown?.message.contains("unknown MIG profile \"9g.1tb\"") == true)
        let wrongModel = failure("1g.5gb", "H100-80GB")
        #expect(
            wrongModel?.path == "reservations[0].profile"
                && wrongModel?.message.contains("not offered by H100-80GB") == true)
        let noMIG = failure("1g.5gb", "V100-32GB")
        #expect(noMIG?.message.contains("reserved whole") == true)
        let noModel = failure("1g.5gb", "B200")
        #expect(noModel?.path == "reservations[0].gpu_model" && noModel?.message.contains("unknown GPU model") == true)
    }
}
