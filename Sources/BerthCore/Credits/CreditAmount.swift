import BerthJSON

/// What credits are counted in (docs/credits.md). One credit is one unit of the class for one hour.
public enum ResourceClass: String, Sendable, CaseIterable, Comparable {
    /// One whole host for one hour.
    case hostHours = "host_hours"
    /// One eighth of a GPU's memory for one hour (`1g.5gb` on an A100-40GB: 1 per hour; a whole GPU: 8).
    case gpuSliceHours = "gpu_slice_hours"
    /// One vCPU of an instance slot for one hour.
    case vcpuHours = "vcpu_hours"

    /// The order of `allCases` (hosts, GPU slices, vCPUs): reports and errors list classes this way.
    public static func < (a: ResourceClass, b: ResourceClass) -> Bool {
        allCases.firstIndex(of: a)! < allCases.firstIndex(of: b)!
    }
}

/// An exact amount of credits, held as a whole number of micro-credits (1 credit = 1_000_000).
///
/// No floating point is ever used for arithmetic: amounts are parsed from the literal decimal text
/// (a JSON integer, a JSON fraction through its shortest decimal form, or a decimal string) and
/// rejected when they carry more than six decimal places. Arithmetic traps on overflow (the range,
/// ±9_223_372_036_854.775807 credits, is far beyond any real allocation); `adding(_:)` and
/// `subtracting(_:)` report it instead.
public struct CreditAmount: Sendable, Hashable, Comparable, CustomStringConvertible, LosslessStringConvertible {
    public static let microPerCredit: Int64 = 1_000_000
    /// Decimal places an amount may carry.
    public static let fractionDigits = 6

    /// The amount in micro-credits.
    public var micro: Int64

    public init(micro: Int64) { self.micro = micro }

    /// Whole credits. Traps if `credits` is beyond the representable range (about 9.2 × 10¹² credits).
    public init(credits: Int64) {
        let (m, overflow) = credits.multipliedReportingOverflow(by: CreditAmount.microPerCredit)
        precondition(!overflow, "credit amount \(credits) is out of range")
        micro = m
    }

    public static let zero = CreditAmount(micro: 0)
    public static let max = CreditAmount(micro: .max)

    public var isZero: Bool { micro == 0 }
    public var isPositive: Bool { micro > 0 }
    public var isNegative: Bool { micro < 0 }

    public static func < (a: CreditAmount, b: CreditAmount) -> Bool { a.micro < b.micro }

    // MARK: Arithmetic

    /// The sum, or nil on overflow.
    public func adding(_ other: CreditAmount) -> CreditAmount? {
        let (v, o) = micro.addingReportingOverflow(other.micro)
        return o ? nil : CreditAmount(micro: v)
    }

    /// The difference, or nil on overflow.
    public func subtracting(_ other: CreditAmount) -> CreditAmount? {
        let (v, o) = micro.subtractingReportingOverflow(other.micro)
        return o ? nil : CreditAmount(micro: v)
    }

    public static func + (a: CreditAmount, b: CreditAmount) -> CreditAmount {
        guard let v = a.adding(b) else { preconditionFailure("credit amount overflow: \(a) + \(b)") }
        return v
    }

    public static func - (a: CreditAmount, b: CreditAmount) -> CreditAmount {
        guard let v = a.subtracting(b) else { preconditionFailure("credit amount overflow: \(a) - \(b)") }
        return v
    }

    public static prefix func - (a: CreditAmount) -> CreditAmount { .zero - a }
    public static func += (a: inout CreditAmount, b: CreditAmount) { a = a + b }
    public static func -= (a: inout CreditAmount, b: CreditAmount) { a = a - b }

    public static func min(_ a: CreditAmount, _ b: CreditAmount) -> CreditAmount { a <= b ? a : b }
    public static func max(_ a: CreditAmount, _ b: CreditAmount) -> CreditAmount { a >= b ? a : b }

    // MARK: Formatting

    /// The exact decimal text, without trailing zeros: `12`, `12.5`, `0.000001`, `-3.25`.
    public var decimalString: String {
        let magnitude = micro.magnitude
        let unit = UInt64(CreditAmount.microPerCredit)
        let whole = magnitude / unit
        let fraction = magnitude % unit
        var s = micro < 0 ? "-" : ""
        s += String(whole)
        if fraction != 0 {
            var digits = String(fraction)
            digits = String(repeating: "0", count: CreditAmount.fractionDigits - digits.count) + digits
            while digits.last == "0" { digits.removeLast() }
            s += "." + digits
        }
        return s
    }

    public var description: String { decimalString }

    /// The amount as a JSON number: an integer when whole, otherwise the fraction whose shortest
    /// form is `decimalString`. That is exact for up to 15 significant digits (below 10⁹ credits
    /// with all six decimals); `decimalString` is exact always.
    public var json: JSON {
        if micro % CreditAmount.microPerCredit == 0 { return .int(micro / CreditAmount.microPerCredit) }
        return .double(Double(decimalString)!)
    }

    // MARK: Parsing

    /// Why a value is not a credit amount (the message completes "amount ...").
    public struct ParseError: Error, Sendable, Equatable, CustomStringConvertible {
        public var message: String
        public init(_ message: String) { self.message = message }
        public var description: String { message }
    }

    /// Parses decimal text exactly: optional `-`, digits, optional `.digits`, optional exponent
    /// (`1e-6`, as Swift prints small doubles). More than six decimal places is an error, not a rounding.
    public static func parse(_ text: String) -> Result<CreditAmount, ParseError> {
        let b = Array(text.utf8)
        var k = 0
        var negative = false
        if k < b.count, b[k] == UInt8(ascii: "-") {
            negative = true
            k += 1
        }
        var digits: [UInt8] = []  // every mantissa digit, integer part then fraction
        var fractionCount = 0
        let intStart = k
        while k < b.count, b[k] >= 48, b[k] <= 57 {
            digits.append(b[k] - 48)
            k += 1
        }
        let malformed = ParseError("expected a decimal number such as 12.5, got \"\(text)\"")
        if k == intStart { return .failure(malformed) }
        if k < b.count, b[k] == UInt8(ascii: ".") {
            k += 1
            let fracStart = k
            while k < b.count, b[k] >= 48, b[k] <= 57 {
                digits.append(b[k] - 48)
                k += 1
            }
            fractionCount = k - fracStart
            if fractionCount == 0 { return .failure(malformed) }
        }
        var exponent = 0
        if k < b.count, b[k] == UInt8(ascii: "e") || b[k] == UInt8(ascii: "E") {
            k += 1
            var expNegative = false
            if k < b.count, b[k] == UInt8(ascii: "+") || b[k] == UInt8(ascii: "-") {
                expNegative = b[k] == UInt8(ascii: "-")
                k += 1
            }
            let expStart = k
            while k < b.count, b[k] >= 48, b[k] <= 57 {
                if exponent < 10_000 { exponent = exponent * 10 + Int(b[k] - 48) }
                k += 1
            }
            if k == expStart { return .failure(malformed) }
            if expNegative { exponent = -exponent }
        }
        if k != b.count { return .failure(malformed) }
        // value = digits × 10^(-scale)
        var scale = fractionCount - exponent
        while let first = digits.first, first == 0 { digits.removeFirst() }
        if digits.isEmpty { return .success(.zero) }
        while digits.last == 0 {
            digits.removeLast()
            scale -= 1
        }
        if scale > CreditAmount.fractionDigits {
            return .failure(
                ParseError(
                    "\"\(text)\" has more than \(CreditAmount.fractionDigits) decimal places (credits are exact to 0.000001)"
                ))
        }
        let tooLarge = ParseError("\"\(text)\" is out of range (at most \(CreditAmount.max) credits)")
        let shift = CreditAmount.fractionDigits - scale  // >= 0
        if digits.count + shift > 19 { return .failure(tooLarge) }
        var v: Int64 = 0
        for d in digits + [UInt8](repeating: 0, count: shift) {
            let (m, o1) = v.multipliedReportingOverflow(by: 10)
            let (a, o2) = m.addingReportingOverflow(Int64(d))
            if o1 || o2 { return .failure(tooLarge) }
            v = a
        }
        return .success(CreditAmount(micro: negative ? -v : v))
    }

    /// Decimal text (see `parse`); nil if it is not an exact amount.
    public init?(_ description: String) {
        guard case .success(let v) = CreditAmount.parse(description) else { return nil }
        self = v
    }

    /// A JSON integer, a JSON fraction (through its shortest decimal form, so `0.1` is exactly
    /// 0.1 credits and `0.1234567` is refused) or a decimal string.
    public init(json: JSON) throws(ParseError) {
        switch json {
        case .int(let i):
            let (m, o) = i.multipliedReportingOverflow(by: CreditAmount.microPerCredit)
            if o { throw ParseError("\(i) is out of range (at most \(CreditAmount.max) credits)") }
            self.init(micro: m)
        case .double(let d):
            guard d.isFinite else { throw ParseError("expected a finite number") }
            switch CreditAmount.parse("\(d)") {
            case .success(let v): self = v
            case .failure(let e): throw e
            }
        case .string(let s):
            switch CreditAmount.parse(s) {
            case .success(let v): self = v
            case .failure(let e): throw e
            }
        default:
            throw ParseError("expected a number or a decimal string, got \(json.typeName)")
        }
    }
}

extension ParamReader {
    /// A credit amount (JSON number or decimal string, at most six decimals). `positive` demands > 0.
    public mutating func creditAmount(_ key: String, required: Bool = false, positive: Bool = false) -> CreditAmount? {
        guard let v = raw(key) else {
            if required { fail(key, "is required") }
            return nil
        }
        let amount: CreditAmount
        do throws(CreditAmount.ParseError) {
            amount = try CreditAmount(json: v)
        } catch {
            fail(key, error.message)
            return nil
        }
        if positive && !amount.isPositive {
            fail(key, "must be greater than 0, got \(amount)")
            return nil
        }
        return amount
    }
}
