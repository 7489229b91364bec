/// `findWindows`: when requests fit, searched only at the times capacity can grow.
extension LeasePlanner {
    /// The earliest windows of `duration` starting in [earliest, latest - duration] at which all of
    /// `requests` fit, in time order. Capacity only grows where an allocation ends, so `earliest`
    /// and the ends of existing allocations on matching hosts are the only candidate starts.
    /// No window ends after `Timestamp.distantFuture`: a time past it has no RFC 3339 form.
    public func findWindows(
        _ requests: [ReservationRequest], duration: Int64, earliest: Timestamp, latest: Timestamp, limit: Int
    ) -> [Interval] {
        let latest = Swift.min(latest, Timestamp.distantFuture)
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
