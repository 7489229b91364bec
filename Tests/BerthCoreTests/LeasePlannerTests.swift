import BerthCore
import BerthJSON
import Testing

@Suite struct LeasePlannerTests {
    static func host(_ name: String, _ props: [String: JSON] = [:]) -> Host {
        Host(
            name: name, vcpus: 8, memoryMB: 1024, diskGB: 10, properties: props, createdAt: Timestamp(seconds: 0),
            updatedAt: Timestamp(seconds: 0))
    }

    static func lease(_ id: String, _ hosts: [String], _ s: Int64, _ e: Int64) -> Lease {
        Lease(
            id: id, name: id, projectID: "p", userID: nil, start: Timestamp(seconds: s), end: Timestamp(seconds: e),
            beforeEndSeconds: nil, status: .pending,
            reservations: [
                Reservation(
                    id: "\(id)-r", request: ReservationRequest(hosts: Int64(hosts.count)), status: .pending,
                    allocations: hosts.map { Allocation(host: $0) })
            ],
            createdAt: Timestamp(seconds: 0))
    }

    @Test func prefersTheTightestGapNotTheFirstName() {
        var cal = LeaseCalendar()
        // h1 is free for ever after 0; h2 is busy until 100 and again from 200: [100, 200) fits h2 exactly.
        cal.add(Self.lease("a", ["h2"], 0, 100))
        cal.add(Self.lease("b", ["h2"], 200, 300))
        let p = LeasePlanner(hosts: [Self.host("h1"), Self.host("h2")], calendar: cal)
        let r = p.place([ReservationRequest(hosts: 1)], window: Interval(start: 100, end: 200))
        #expect(r == .success([[Allocation(host: "h2")]]))
    }

    @Test func neverDoubleBooksAndReportsBusy() {
        var cal = LeaseCalendar()
        cal.add(Self.lease("a", ["h1"], 0, 100))
        let p = LeasePlanner(hosts: [Self.host("h1")], calendar: cal)
        guard case .failure(.busy) = p.place([ReservationRequest(hosts: 1)], window: Interval(start: 50, end: 150))
        else {
            Issue.record("expected busy")
            return
        }
        #expect(
            p.findWindows(
                [ReservationRequest(hosts: 1)], duration: 100, earliest: Timestamp(seconds: 50),
                latest: Timestamp(seconds: 1000), limit: 1)
                == [Interval(start: 100, end: 200)])
    }

    @Test func minMaxTakesAsManyAsFree() {
        var cal = LeaseCalendar()
        cal.add(Self.lease("a", ["h1"], 0, 100))
        let p = LeasePlanner(hosts: ["h1", "h2", "h3"].map { Self.host($0) }, calendar: cal)
        let r = p.place([ReservationRequest(hostsMin: 1, max: 3)], window: Interval(start: 0, end: 50))
        #expect(r == .success([[Allocation(host: "h2"), Allocation(host: "h3")]]))
    }

    @Test func placesTheMostConstrainedReservationFirst() {
        let p = LeasePlanner(hosts: [Self.host("a", ["gpu": "yes"]), Self.host("b")], calendar: LeaseCalendar())
        let any = ReservationRequest(hosts: 1)
        let gpu = ReservationRequest(hosts: 1, properties: .equalities(["gpu": "yes"]))
        let r = p.place([any, gpu], window: Interval(start: 0, end: 10))
        #expect(r == .success([[Allocation(host: "b")], [Allocation(host: "a")]]))
    }

    @Test func reportsNeverFitsWhenTooFewHostsMatch() {
        let p = LeasePlanner(hosts: [Self.host("a")], calendar: LeaseCalendar())
        guard case .failure(.neverFits) = p.place([ReservationRequest(hosts: 2)], window: Interval(start: 0, end: 10))
        else {
            Issue.record("expected neverFits")
            return
        }
    }

    @Test func keepsCurrentHostsWhenTheyStillFit() {
        let p = LeasePlanner(hosts: ["h1", "h2", "h3"].map { Self.host($0) }, calendar: LeaseCalendar())
        let r = p.place(
            [ReservationRequest(hosts: 2)], window: Interval(start: 0, end: 10), keep: [[Allocation(host: "h3")]])
        #expect(r == .success([[Allocation(host: "h3"), Allocation(host: "h1")]]))
    }

    @Test func skipsHostsThatAreDownOrNotReservable() {
        var down = Self.host("a")
        down.state = .maintenance
        var fixed = Self.host("b")
        fixed.reservable = false
        let p = LeasePlanner(hosts: [down, fixed, Self.host("c")], calendar: LeaseCalendar())
        #expect(
            p.place([ReservationRequest(hosts: 1)], window: Interval(start: 0, end: 10))
                == .success([[Allocation(host: "c")]]))
    }
}
