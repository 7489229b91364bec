import BerthCore
import BerthJSON
import Testing

@Suite struct PropertyFilterTests {
    let host = Host(
        name: "c1", vcpus: 64, memoryMB: 8192, diskGB: 100, properties: ["rack": "r1", "ib": "true", "gen": "10"],
        createdAt: Timestamp(seconds: 0), updatedAt: Timestamp(seconds: 0))

    func matches(_ text: String) throws -> Bool {
        try PropertyFilter(json: try JSONParser.parse(text), path: "properties").matches(host)
    }

    @Test func equalityObject() throws {
        #expect(try matches(#"{"rack":"r1"}"#))
        #expect(try !matches(#"{"rack":"r2"}"#))
        #expect(try matches(#"{"rack":"r1","ib":true}"#))  // booleans compare as text
        #expect(try !matches(#"{"missing":"x"}"#))
    }

    @Test func expressionsCompareNumbersAsNumbers() throws {
        #expect(try matches(#"[">=", "$memory_mb", 4096]"#))
        #expect(try !matches(#"[">", "$memory_mb", 8192]"#))
        // "10" > "9" is false as text but true as numbers.
        #expect(try matches(#"[">", "$gen", 9]"#))
        #expect(try matches(#"["and", [">=", "$memory_mb", 4096], ["==", "$ib", "true"]]"#))
        #expect(try matches(#"["or", ["==", "$rack", "r9"], ["in", "$rack", ["r1", "r2"]]]"#))
        #expect(try !matches(#"["not", ["==", "$rack", "r1"]]"#))
        #expect(try matches(#"["!=", "$absent", "x"]"#))
    }

    /// A lease stores its filters several levels down; a deeper expression could be accepted and
    /// then not read back at the next start.
    @Test func expressionsNestAtMostMaxDepthLevels() throws {
        func nested(_ depth: Int) -> String {
            String(repeating: #"["not", "#, count: depth - 1) + #"["==", "$rack", "r1"]"#
                + String(repeating: "]", count: depth - 1)
        }
        #expect(try matches(nested(PropertyFilter.maxDepth - 1)))
        #expect(throws: BerthError.self) { try matches(nested(PropertyFilter.maxDepth + 1)) }
    }

    @Test func malformedExpressionsNameThePath() {
        #expect {
            try PropertyFilter(
                json: try JSONParser.parse(#"["and", ["~=", "$a", 1]]"#), path: "reservations[0].properties")
        } throws: { error in
            guard let e = error as? BerthError else { return false }
            return e.code == .invalidParams && e.fieldErrors.first?.path == "reservations[0].properties[1][0]"
        }
        #expect(throws: BerthError.self) {
            try PropertyFilter(json: try JSONParser.parse(#"["==", "rack", "r1"]"#), path: "p")
        }
        #expect(throws: BerthError.self) { try PropertyFilter(json: try JSONParser.parse(#"{"a":[1]}"#), path: "p") }
        #expect(throws: BerthError.self) { try PropertyFilter(json: .int(3), path: "p") }
    }
}
