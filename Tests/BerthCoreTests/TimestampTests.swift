import BerthTestSupport
import Testing

@testable import BerthCore

@Suite struct TimestampTests {
    @Test func formatsAndParsesUTC() throws {
        let t = try #require(Timestamp(rfc3339: "2030-01-01T10:00:00Z"))
        #expect(t.seconds == 1_893_492_000)
        #expect(t.rfc3339 == "2030-01-01T10:00:00Z")
    }

    @Test func normalisesOffsetsAndTruncatesFractions() throws {
        let t = try #require(Timestamp(rfc3339: "2030-01-01T12:00:00.750+02:00"))
        #expect(t.rfc3339 == "2030-01-01T10:00:00Z")
    }

    @Test(arguments: [
        "2030-02-30T00:00:00Z", "2030-01-01 10:00:00Z", "2030-01-01T10:00:00", "2030-13-01T00:00:00Z", "now", "",
    ])
    func rejectsMalformed(_ s: String) {
        #expect(Timestamp(rfc3339: s) == nil)
    }

    @Test func roundTripsAcrossCenturiesAndLeapDays() {
        var rng = SplitMix64(seed: 7)
        for _ in 0..<5000 {
            let t = Timestamp(seconds: Int64.random(in: -2_000_000_000...10_000_000_000, using: &rng))
            #expect(Timestamp(rfc3339: t.rfc3339) == t, "\(t.seconds) -> \(t.rfc3339)")
        }
        #expect(Timestamp(rfc3339: "2028-02-29T23:59:59Z")?.rfc3339 == "2028-02-29T23:59:59Z")
        #expect(Timestamp(seconds: 0).rfc3339 == "1970-01-01T00:00:00Z")
        #expect(Timestamp.distantFuture.rfc3339 == "9999-12-31T23:59:59Z")
        #expect(Timestamp(rfc3339: "0001-02-03T04:05:06Z")?.rfc3339 == "0001-02-03T04:05:06Z")
        #expect(Timestamp(rfc3339: "2100-02-29T00:00:00Z") == nil)
    }
}
