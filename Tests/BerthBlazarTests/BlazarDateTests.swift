import BerthCore
import BerthJSON
import Testing

@testable import BerthBlazar

@Suite("Blazar's date formats")
struct BlazarDateTests {
    @Test func requestDatesAreMinutesInUTC() {
        #expect(BlazarDate.parse("2030-01-01 10:05") == Timestamp(rfc3339: "2030-01-01T10:05:00Z"))
        for bad in ["2030-01-01T10:05", "2030-01-01 10:05:00", "2030-13-01 10:05", "now", "", "2030-01-01 1:05"] {
            #expect(BlazarDate.parse(bad) == nil, "\(bad)")
        }
    }

    @Test func anInvalidDateGetsBlazarsMessage() {
        #expect(throws: BlazarError(400, "tomorrow is an invalid date. Required format: %Y-%m-%d %H:%M")) {
            try BlazarDate.parseRequest("tomorrow", field: "start_date")
        }
        #expect(throws: BlazarError(400, "5 is an invalid date. Required format: %Y-%m-%d %H:%M")) {
            try BlazarDate.parseRequest(.int(5), field: "end_date")
        }
    }

    @Test func responsesCarryMicrosecondsAndRecordsASpace() {
        #expect(BlazarDate.response("2030-01-01T10:00:00Z") == "2030-01-01T10:00:00.000000")
        #expect(BlazarDate.record("2030-01-01T10:00:00Z") == "2030-01-01 10:00:00")
        #expect(BlazarDate.response(nil) == .null)
    }

    @Test func durationsAsBlazarWritesThem() {
        #expect(BlazarDuration.seconds("1h") == 3600)
        #expect(BlazarDuration.seconds("30m") == 1800)
        #expect(BlazarDuration.seconds("2d") == 172_800)
        #expect(BlazarDuration.seconds("45") == 45)
        #expect(BlazarDuration.seconds("1y") == nil)
        // No overflow, whatever a client sends: at most a thousand years.
        #expect(BlazarDuration.seconds("9223372036854775807w") == nil)
        #expect(BlazarDuration.seconds("106751991167300d") == nil)
        #expect(BlazarDuration.seconds("9223372036854775807") == nil)
        #expect(BlazarDuration.seconds("-1h") == nil)
    }
}
