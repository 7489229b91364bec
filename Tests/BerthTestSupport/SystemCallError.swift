/// A failed POSIX call in test set-up, with its errno.
public struct SystemCallError: Error, CustomStringConvertible {
    public let call: String
    public let code: Int32

    public init(call: String, code: Int32) {
        self.call = call
        self.code = code
    }

    public var description: String { "\(call) failed: errno \(code)" }
}
