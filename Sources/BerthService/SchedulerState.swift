import BerthCore
import BerthJSON
import BerthStore
import HeapModule

/// Everything the scheduler holds in memory that derives from the store: one value, so a restore
/// (at start, and after a failed commit) replaces all of it at once and nothing can be seen
/// half rebuilt.
///
/// The actor keeps it in one stored property and mutates it in place (`state.setLease(l)`,
/// `state.timers.insert(t)`): copying it into a local and mutating the copy would copy its
/// tables on write. Leases, preemptibles and hosts change only through the methods below, which
/// keep the listing orders, live sets and inventory in step with them.
struct SchedulerState: Sendable {
    private(set) var hosts: [String: Host] = [:]
    /// `hosts` in name order. Both change only through `setHost`/`removeHost`, which keep
    /// `inventory` in step.
    private(set) var sortedHosts: [Host] = []
    /// `sortedHosts` numbered in `calendar`, rebuilt when the hosts change (`rebuildInventory`),
    /// so planning costs nothing per host that the search does not touch.
    private(set) var inventory: HostInventory
    private(set) var leases: [String: Lease] = [:]
    /// Leases in listing order (created_at, id), for stable cursors.
    private(set) var leaseOrder: [(Timestamp, String)] = []
    var calendar = LeaseCalendar()
    var timers = Heap<LeaseTimer>()
    var lastEventSeq: Int64 = 0
    /// Host properties an operator marked private (`private_properties` in the store's meta table).
    var privateProperties: Set<String> = []
    /// The highest host id ever given (`host_id_seq` in the store's meta table): ids are never reused.
    var hostIDSeq: Int64 = 0
    /// Credit grants, charges and refunds (pure; rebuilt from the store's entries).
    var ledger: CreditLedger
    private(set) var preemptibles: [String: Preemptible] = [:]
    /// Preemptibles in listing order (created_at, id).
    private(set) var preemptibleOrder: [(Timestamp, String)] = []
    /// Ids of the preemptibles still holding capacity, per host.
    private(set) var livePreemptibles: [String: Set<String>] = [:]
    /// Reserved vs used unit-seconds (metrics; see Scheduler+Metrics.swift). Not in the store:
    /// a restore carries it over so the counters never go back.
    var usage = UsageAccrual()

    /// The state a snapshot describes. The calendar is built on one core and everything else on
    /// the other (both only read the snapshot); the inventory is then numbered in that calendar.
    init(snapshot snap: BerthStore.Snapshot, enforceCredits: Bool, usage: UsageAccrual = UsageAccrual())
        throws(BerthError)
    {
        let (calendar, rest) = Parallel.both(
            { SchedulerState.calendar(leases: snap.leases, preemptibles: snap.preemptibles) },
            { SchedulerState.withoutCalendar(snap, enforceCredits: enforceCredits) })
        self = try rest.get()
        self.calendar = calendar
        self.usage = usage
        rebuildInventory()
    }

    private init(ledger: CreditLedger) {
        self.ledger = ledger
        var empty = LeaseCalendar()
        inventory = HostInventory(hosts: [], calendar: &empty)
    }

    /// Everything but the calendar (left empty) and the inventory (left to `rebuildInventory`).
    private static func withoutCalendar(_ snap: BerthStore.Snapshot, enforceCredits: Bool) -> Result<
        SchedulerState, BerthError
    > {
        let ledger: CreditLedger
        do throws(BerthError) {
            ledger = try CreditLedger(entries: snap.ledger, enforce: enforceCredits)
        } catch {
            return .failure(error)
        }
        var s = SchedulerState(ledger: ledger)
        s.lastEventSeq = snap.lastEventSeq
        if let text = snap.meta["private_properties"], let list = try? JSONParser.parse(text).arrayValue {
            s.privateProperties = Set(list.compactMap(\.stringValue))
        }
        s.hostIDSeq = max(snap.meta["host_id_seq"].flatMap(Int64.init) ?? 0, snap.hosts.map(\.id).max() ?? 0)
        s.hosts.reserveCapacity(snap.hosts.count)
        for h in snap.hosts { s.hosts[h.name] = h }
        s.sortedHosts = snap.hosts.sorted { $0.name < $1.name }
        s.leases.reserveCapacity(snap.leases.count)
        s.leaseOrder.reserveCapacity(snap.leases.count)
        var due: [LeaseTimer] = []
        due.reserveCapacity(2 * snap.leases.count)
        for l in snap.leases {
            s.leases[l.id] = l
            s.leaseOrder.append((l.createdAt, l.id))
            due.append(contentsOf: LeaseTimer.timers(for: l))
        }
        s.leaseOrder.sort { $0 < $1 }
        for p in snap.preemptibles {
            s.preemptibles[p.id] = p
            s.preemptibleOrder.append((p.createdAt, p.id))
            if p.status.isLive { s.livePreemptibles[p.host, default: []].insert(p.id) }
            if p.status == .preempting, let at = p.preemptAt {
                due.append(LeaseTimer(at: at, kind: .preempt, leaseID: p.id))
            }
        }
        // One O(n) heapify instead of n inserts.
        s.timers = Heap(due)
        return .success(s)
    }

    /// The calendar of a snapshot: every lease's allocations (in the snapshot's order), then every
    /// preemptible's, as the scheduler would have added them one by one.
    static func calendar(leases: [Lease], preemptibles: [Preemptible]) -> LeaseCalendar {
        LeaseCalendar(sortedEntriesByHost: CalendarBulkLoad.entriesByHost(leases: leases, preemptibles: preemptibles))
    }

    // MARK: - Hosts and the indexes derived from them

    /// The one place the inventory is rebuilt: after the hosts (or the whole state) change.
    mutating func rebuildInventory() {
        inventory = HostInventory(hosts: sortedHosts, calendar: &calendar)
    }

    /// Adds or replaces a host and brings the derived indexes up to date.
    mutating func setHost(_ host: Host) {
        hosts[host.name] = host
        sortedHosts = hosts.values.sorted { $0.name < $1.name }
        rebuildInventory()
    }

    /// Forgets a host and brings the derived indexes up to date.
    mutating func removeHost(named name: String) {
        hosts[name] = nil
        sortedHosts = hosts.values.sorted { $0.name < $1.name }
        rebuildInventory()
    }

    // MARK: - Leases and preemptibles

    /// Stores a new version of a lease (a new one also takes its place in the listing order).
    /// The calendar is the caller's: a change removes old versions before adding new ones.
    mutating func setLease(_ l: Lease) {
        if leases[l.id] == nil {
            let key = (l.createdAt, l.id)
            var lo = 0, hi = leaseOrder.count
            while lo < hi {
                let mid = (lo + hi) / 2
                if leaseOrder[mid] < key { lo = mid + 1 } else { hi = mid }
            }
            leaseOrder.insert(key, at: lo)
        }
        leases[l.id] = l
    }

    /// Replaces a preemptible: calendar entries, live set, listing order, timer.
    mutating func setPreemptible(_ p: Preemptible) {
        if let old = preemptibles[p.id] {
            calendar.remove(old)
        } else {
            let key = (p.createdAt, p.id)
            preemptibleOrder.insert(key, at: CreationCursor.index(after: key, in: preemptibleOrder))
        }
        preemptibles[p.id] = p
        calendar.add(p)
        if p.status.isLive {
            livePreemptibles[p.host, default: []].insert(p.id)
        } else {
            livePreemptibles[p.host]?.remove(p.id)
            if livePreemptibles[p.host]?.isEmpty == true { livePreemptibles[p.host] = nil }
        }
        if p.status == .preempting, let at = p.preemptAt {
            timers.insert(LeaseTimer(at: at, kind: .preempt, leaseID: p.id))
        }
    }

    /// Queues the timers a lease still owes.
    mutating func scheduleTimers(for l: Lease) {
        for t in LeaseTimer.timers(for: l) { timers.insert(t) }
    }
}
