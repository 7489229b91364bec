import BerthJSON
import Testing

@Suite struct JSONParserTests {
    @Test func parsesEveryKindOfValue() throws {
        let v = try JSONParser.parse(#"{"a":[1,-2,3.5,1e3,true,false,null,"x\n\u00e9\ud83d\ude00"],"b":{}}"#)
        #expect(v["a"]?.arrayValue?.count == 8)
        #expect(v["a"]?.arrayValue?[0] == .int(1))
        #expect(v["a"]?.arrayValue?[1] == .int(-2))
        #expect(v["a"]?.arrayValue?[2] == .double(3.5))
        #expect(v["a"]?.arrayValue?[3] == .double(1000))
        #expect(v["a"]?.arrayValue?[7] == .string("x\né😀"))
        #expect(v["b"] == .object([:]))
    }

    @Test func roundTripsThroughSerialization() throws {
        let text = #"{"id":"x","list":[1,2.5,"a\"b\\c",null,true],"n":{"k":-7}}"#
        let v = try JSONParser.parse(text)
        #expect(try JSONParser.parse(v.serialized()) == v)
        #expect(v.serialized() == text)  // keys here are already sorted
    }

    @Test(arguments: [
        "", "{", "[1,]", "{\"a\":}", "01", "1.", "-", "tru", "\"abc", "{\"a\" 1}", "[1 2]", "\"\\x\"", "\"\\ud800\"",
        "nul", "1 2", "{\"a\":1,}", "\"\u{01}\"",
    ])
    func rejectsInvalidText(_ text: String) {
        #expect(throws: JSONParseError.self) { try JSONParser.parse(text) }
    }

    @Test func rejectsInvalidUTF8() {
        let bytes: [UInt8] = [0x22, 0xC3, 0x28, 0x22]  // "\xC3(" is not UTF-8
        #expect(throws: JSONParseError.self) { try JSONParser.parse(bytes) }
    }

    @Test func capsNestingDepth() throws {
        let deep = String(repeating: "[", count: 300) + String(repeating: "]", count: 300)
        #expect(throws: JSONParseError.self) { try JSONParser.parse(deep) }
        let ok = String(repeating: "[", count: 100) + String(repeating: "]", count: 100)
        _ = try JSONParser.parse(ok)
    }

    @Test func largeIntegersBecomeDoublesAndHugeNumbersFail() throws {
        #expect(try JSONParser.parse("9223372036854775807") == .int(Int64.max))
        #expect(try JSONParser.parse("9223372036854775808") == .double(9_223_372_036_854_775_808))
        #expect(throws: JSONParseError.self) { try JSONParser.parse("1e400") }
    }

    @Test func escapesControlCharactersWhenSerializing() {
        #expect(JSON.string("a\u{01}b\tc").serialized() == #""a\u0001b\tc""#)
    }

    /// The serializer writes exactly what the plain algorithm writes (sorted keys looked up one by
    /// one, `String(v)` for integers, every byte escaped on its own).
    @Test func serializesExactlyAsThePlainAlgorithm() throws {
        func plain(_ v: JSON) -> String {
            switch v {
            case .null: return "null"
            case .bool(let b): return b ? "true" : "false"
            case .int(let i): return String(i)
            case .double: return v.serialized()
            case .string(let s):
                var out = "\""
                for u in s.unicodeScalars {
                    switch u {
                    case "\"": out += "\\\""
                    case "\\": out += "\\\\"
                    case "\n": out += "\\n"
                    case "\r": out += "\\r"
                    case "\t": out += "\\t"
                    case _ where u.value < 0x20:
                        let hex = String(u.value, radix: 16)
                        out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                    default: out.unicodeScalars.append(u)
                    }
                }
                return out + "\""
            case .array(let a): return "[" + a.map(plain).joined(separator: ",") + "]"
            case .object(let o):
                return "{" + o.keys.sorted().map { plain(.string($0)) + ":" + plain(o[$0]!) }.joined(separator: ",")
                    + "}"
            }
        }
        let strings = ["", "plain", "a\"b", "back\\slash", "\u{01}\u{1f}x\n\r\t", "é😀\u{7f}", "\"\"", "end\\"]
        let ints: [Int64] = [0, 7, -1, 10, -10, 1234567890, Int64.max, Int64.min]
        var items: [JSON] = strings.map { .string($0) } + ints.map { .int($0) }
        items.append(.object(Dictionary(uniqueKeysWithValues: strings.enumerated().map { ($1, .int(Int64($0))) })))
        items.append(.object(["z": [1, "é", ["b": nil, "a": true]], "a": 2.5, "Z": false, "é": [:], "aa": []]))
        for v in items {
            #expect(v.serialized() == plain(v))
            #expect(v.serializedBytes() == Array(plain(v).utf8))
        }
        #expect(JSON.array(items).serialized() == plain(.array(items)))
    }

    @Test func intValueAcceptsWholeFractionsOnly() {
        #expect(JSON.double(3.0).intValue == 3)
        #expect(JSON.double(3.5).intValue == nil)
        #expect(JSON.string("3").intValue == nil)
    }
}
