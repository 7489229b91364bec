extension Host {
    /// A name Nova could give a compute host: starts with a letter or digit, then letters, digits,
    /// '.', '_' or '-', at most 63 bytes. `host.create` refuses others; a `host` filter naming one
    /// can match nothing and is refused too.
    public static func isValidName(_ s: String) -> Bool {
        let b = Array(s.utf8)
        guard let first = b.first, b.count <= 63 else { return false }
        func alnum(_ c: UInt8) -> Bool { (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122) }
        guard alnum(first) else { return false }
        return b.allSatisfy {
            alnum($0) || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: "-")
        }
    }

    /// The message for a name `isValidName` refuses.
    public static let invalidNameMessage =
        "must start with a letter or digit and contain only letters, digits, '.', '_' and '-'"
}
