/// Chooses hosts for a lease's reservations over a window (pure: reads a calendar, writes nothing).
///
/// Policy: among the hosts that match and are free for the whole window, prefer those whose free
/// gap around the window is tightest (best fit in time), then by name for determinism. Long free
/// runs on other hosts stay whole for later, longer requests. Reservations are placed most
/// constrained first (fewest matching hosts), so a broad request does not take the only host a
/// narrow one could use.
public struct LeasePlanner: Sendable {
    /// Hosts in name order (the tie-break order).
    public var hosts: [Host]
    public var calendar: LeaseCalendar

    public init(hosts: [Host], calendar: LeaseCalendar) {
        self.hosts = hosts
        self.calendar = calendar
    }

    public enum Failure: Error, Sendable, Equatable {
        /// Not enough hosts match at all (whatever the time): a later start will not help.
        case neverFits(String)
        /// Enough hosts match, but not enough are free in this window.
        case busy(String)

        public var message: String {
            switch self {
            case .neverFits(let m), .busy(let m): return m
            }
        }
    }

    func eligible(_ request: ReservationRequest) -> [Host] {
        hosts.filter { $0.isSchedulable && request.properties.matches($0) }
    }

    /// Places every request in `window`. `keep[i]` lists hosts reservation i holds now and should
    /// keep if they are still free and matching (lease updates).
    public func place(_ requests: [ReservationRequest], window: Interval, keep: [[String]] = [])
        -> Result<[[Allocation]], Failure>
    {
        var eligibleByRequest: [[Host]] = []
        for (i, r) in requests.enumerated() {
            guard r.kind == .host else { return .failure(.neverFits("reservation kind '\(r.kind.rawValue)' cannot be placed")) }
            let e = eligible(r)
            if Int64(e.count) < r.min {
                let what = r.properties == .all ? "schedulable hosts exist" : "schedulable hosts match the properties"
                return .failure(
                    .neverFits("reservations[\(i)] needs \(r.min) host\(r.min == 1 ? "" : "s") but only \(e.count) \(what)"))
            }
            eligibleByRequest.append(e)
        }
        let order = requests.indices.sorted { a, b in
            (eligibleByRequest[a].count, a) < (eligibleByRequest[b].count, b)
        }
        var taken: Set<String> = []
        var result = [[Allocation]](repeating: [], count: requests.count)
        for i in order {
            let r = requests[i]
            let free = eligibleByRequest[i].filter { !taken.contains($0.name) && calendar.isFree(host: $0.name, during: window) }
            let freeNames = Set(free.map(\.name))
            var chosen: [String] = []
            for name in (i < keep.count ? keep[i] : []) where freeNames.contains(name) && Int64(chosen.count) < r.max {
                chosen.append(name)
            }
            if Int64(chosen.count) < r.max {
                let chosenSet = Set(chosen)
                let ranked = free.filter { !chosenSet.contains($0.name) }
                    .map { (slack: calendar.slack(host: $0.name, around: window), name: $0.name) }
                    .sorted { ($0.slack, $0.name) < ($1.slack, $1.name) }
                for c in ranked where Int64(chosen.count) < r.max { chosen.append(c.name) }
            }
            if Int64(chosen.count) < r.min {
                return .failure(
                    .busy(
                        "reservations[\(i)] needs \(r.min) host\(r.min == 1 ? "" : "s") but only \(chosen.count) matching host\(chosen.count == 1 ? " is" : "s are") free from \(Timestamp(seconds: window.start)) to \(Timestamp(seconds: window.end))"
                    ))
            }
            taken.formUnion(chosen)
            result[i] = chosen.map { Allocation(host: $0) }
        }
        return .success(result)
    }

    /// The earliest windows of `duration` starting in [earliest, latest - duration] at which all of
    /// `requests` fit, in time order. Only `earliest` and the ends of existing allocations on
    /// matching hosts can be such starts, so those are the only candidates tried.
    public func findWindows(
        _ requests: [ReservationRequest], duration: Int64, earliest: Timestamp, latest: Timestamp, limit: Int
    ) -> [Interval] {
        guard duration > 0, limit > 0, earliest.seconds + duration <= latest.seconds else { return [] }
        var candidates: [Int64] = [earliest.seconds]
        var hostNames: Set<String> = []
        for r in requests { for h in eligible(r) { hostNames.insert(h.name) } }
        let range = Interval(start: earliest.seconds, end: latest.seconds - duration + 1)
        for name in hostNames { calendar.ends(host: name, in: range, into: &candidates) }
        candidates.sort()
        var out: [Interval] = []
        var last: Int64? = nil
        for t in candidates where t != last {
            last = t
            let window = Interval(start: t, end: t + duration)
            if case .success = place(requests, window: window) {
                out.append(window)
                if out.count >= limit { break }
            }
        }
        return out
    }
}
