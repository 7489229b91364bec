import BerthJSON
import Testing

@testable import BerthFuzz

/// The oracle that decides whether a reply is a valid JSON-RPC answer: it must accept what the
/// contract allows and catch each way a reply can be wrong (otherwise the fuzzers could not fail).
@Suite struct ReplyOracleTests {
    static func problem(_ request: String, _ reply: String?) -> String? {
        ReplyOracle.problem(request: Array(request.utf8), reply: reply.map { Array($0.utf8) })
    }

    static let call = #"{"jsonrpc":"2.0","method":"clock.now","id":7}"#
    static let note = #"{"jsonrpc":"2.0","method":"clock.now"}"#

    @Test func acceptsValidReplies() {
        #expect(Self.problem(Self.call, #"{"jsonrpc":"2.0","result":{"now":"x"},"id":7}"#) == nil)
        #expect(Self.problem(Self.note, nil) == nil)
        #expect(
            Self.problem(
                "{",
                #"{"jsonrpc":"2.0","error":{"code":-32700,"message":"m","data":{"reason":"parse_error"}},"id":null}"#)
                == nil)
        #expect(
            Self.problem(
                #"{"jsonrpc":"2.0","method":"x","id":"s"}"#,
                #"{"jsonrpc":"2.0","error":{"code":-32602,"message":"m","data":{"reason":"invalid_params","errors":[{"path":"a","message":"b"}]}},"id":"s"}"#
            ) == nil)
        #expect(
            Self.problem(#"{"jsonrpc":"2.0","method":"x","id":1.5}"#, #"{"jsonrpc":"2.0","result":{},"id":1.5}"#) == nil
        )
        #expect(Self.problem("[\(Self.note),\(Self.note)]", nil) == nil)
        #expect(
            Self.problem(
                "[\(Self.call),\(Self.note),5]",
                #"[{"jsonrpc":"2.0","result":1,"id":7},{"jsonrpc":"2.0","error":{"code":-32600,"message":"m","data":{"reason":"invalid_request"}},"id":null}]"#
            ) == nil)
    }

    @Test func catchesWrongEnvelopes() {
        #expect(Self.problem(Self.note, #"{"jsonrpc":"2.0","result":1,"id":null}"#) != nil)  // a notification answered
        #expect(Self.problem(Self.call, nil) != nil)  // a call not answered
        #expect(Self.problem(Self.call, "not json") != nil)
        #expect(Self.problem(Self.call, #"{"jsonrpc":"2.0","result":1,"id":8}"#) != nil)  // wrong id
        #expect(Self.problem(Self.call, #"{"jsonrpc":"2.0","result":1,"id":"7"}"#) != nil)  // id of another type
        #expect(Self.problem(Self.call, #"{"jsonrpc":"2.0","result":1,"id":7.0}"#) != nil)
        #expect(Self.problem(Self.call, #"{"jsonrpc":"2.0","result":1}"#) != nil)  // no id
        #expect(Self.problem(Self.call, #"{"jsonrpc":"1.0","result":1,"id":7}"#) != nil)
        #expect(Self.problem(Self.call, #"{"jsonrpc":"2.0","id":7}"#) != nil)
        #expect(Self.problem(Self.call, #"{"jsonrpc":"2.0","result":1,"error":{},"id":7}"#) != nil)
        #expect(Self.problem(Self.call, #"{"jsonrpc":"2.0","result":1,"id":7,"extra":0}"#) != nil)
        #expect(Self.problem(Self.call, #"[{"jsonrpc":"2.0","result":1,"id":7}]"#) != nil)  // an array for one call
    }

    @Test func catchesWrongErrors() {
        func err(_ e: String) -> String { #"{"jsonrpc":"2.0","error":"# + e + #","id":7}"# }
        #expect(Self.problem(Self.call, err(#"{"code":-32001,"message":"m","data":{"reason":"not_found"}}"#)) == nil)
        #expect(Self.problem(Self.call, err(#"{"code":-1,"message":"m","data":{"reason":"not_found"}}"#)) != nil)
        #expect(Self.problem(Self.call, err(#"{"code":-32001.5,"message":"m","data":{"reason":"not_found"}}"#)) != nil)
        #expect(Self.problem(Self.call, err(#"{"code":-32001,"message":"m","data":{"reason":"conflict"}}"#)) != nil)
        #expect(Self.problem(Self.call, err(#"{"code":-32001,"message":"","data":{"reason":"not_found"}}"#)) != nil)
        #expect(Self.problem(Self.call, err(#"{"code":-32001,"data":{"reason":"not_found"}}"#)) != nil)
        #expect(
            Self.problem(Self.call, err(#"{"code":-32602,"message":"m","data":{"reason":"invalid_params"}}"#)) != nil)
        // A bug inside the server is a finding, unless faults are injected on purpose.
        let internalError = err(#"{"code":-32603,"message":"m","data":{"reason":"internal_error"}}"#)
        #expect(Self.problem(Self.call, internalError) != nil)
        #expect(
            ReplyOracle.problem(
                request: Array(Self.call.utf8), reply: Array(internalError.utf8), allowInternalErrors: true) == nil)
    }

    @Test func catchesWrongCodesForBrokenRequests() {
        let ok = #"{"jsonrpc":"2.0","result":1,"id":null}"#
        #expect(Self.problem("{", ok) != nil)  // not JSON needs -32700
        #expect(
            Self.problem(
                "{",
                #"{"jsonrpc":"2.0","error":{"code":-32600,"message":"m","data":{"reason":"invalid_request"}},"id":null}"#
            ) != nil)
        #expect(Self.problem("42", ok) != nil)  // not an object needs -32600
        #expect(Self.problem(#"{"jsonrpc":"2.0","method":"x","id":true}"#, ok) != nil)
        // An id of the wrong type cannot be echoed: -32600 with a null id.
        #expect(
            Self.problem(
                #"{"jsonrpc":"2.0","method":"x","id":[1]}"#,
                #"{"jsonrpc":"2.0","error":{"code":-32600,"message":"m","data":{"reason":"invalid_request"}},"id":null}"#
            ) == nil)
        // An invalid request without an id is not a notification: it is answered with a null id.
        #expect(Self.problem(#"{"jsonrpc":"1.0","method":"x"}"#, nil) != nil)
        #expect(Self.problem(#"{"method":"x","params":3}"#, nil) != nil)
    }

    @Test func catchesWrongBatchReplies() {
        let one = #"{"jsonrpc":"2.0","result":1,"id":7}"#
        #expect(Self.problem("[\(Self.call),\(Self.call)]", "[\(one)]") != nil)  // one reply short
        #expect(Self.problem("[\(Self.call)]", one) != nil)  // not an array
        #expect(Self.problem("[\(Self.note)]", "[\(one)]") != nil)  // only notifications: no reply
        #expect(Self.problem("[\(Self.call),\(Self.note)]", nil) != nil)
        // Empty and oversized batches are one -32600 error object, not an array.
        let invalid =
            #"{"jsonrpc":"2.0","error":{"code":-32600,"message":"m","data":{"reason":"invalid_request"}},"id":null}"#
        #expect(Self.problem("[]", invalid) == nil)
        #expect(Self.problem("[]", "[\(invalid)]") != nil)
        let big = "[" + Array(repeating: Self.note, count: 1001).joined(separator: ",") + "]"
        #expect(Self.problem(big, invalid) == nil)
        #expect(Self.problem(big, nil) != nil)
        // Order matters: replies come in request order.
        let two = #"{"jsonrpc":"2.0","method":"clock.now","id":8}"#
        let eight = #"{"jsonrpc":"2.0","result":1,"id":8}"#
        #expect(Self.problem("[\(Self.call),\(two)]", "[\(one),\(eight)]") == nil)
        #expect(Self.problem("[\(Self.call),\(two)]", "[\(eight),\(one)]") != nil)
    }
}
