/// Settings the scheduler enforces (from the daemon's config file).
public struct SchedulerPolicy: Sendable {
    /// Longest lease allowed (`policy_violation`, rule `max_lease_duration`); nil for no limit.
    public var maxLeaseDuration: Int64?
    /// How far ahead `earliest_start` and `availability.find` look by default.
    public var searchHorizon: Int64
    /// How far in the past a `start` may be and still be taken as "now" (client clock skew).
    public var startGrace: Int64

    /// Refuse leases the project's credits cannot pay for (-32003); off: costs are only recorded.
    public var enforceCredits: Bool
    /// Preemptible lifetimes, notice and what preemption does.
    public var preemption: PreemptionPolicy

    public init(
        maxLeaseDuration: Int64? = nil, searchHorizon: Int64 = 366 * 86_400, startGrace: Int64 = 60,
        enforceCredits: Bool = false, preemption: PreemptionPolicy = PreemptionPolicy()
    ) {
        self.enforceCredits = enforceCredits
        self.preemption = preemption
        self.maxLeaseDuration = maxLeaseDuration
        self.searchHorizon = searchHorizon
        self.startGrace = startGrace
    }
}

/// Settings for preemptible instances (config section `preemption`).
public struct PreemptionPolicy: Sendable {
    /// Guaranteed lifetime when a request names none.
    public var defaultMinLifetime: Int64
    /// Longest guaranteed lifetime a request may ask for (`policy_violation`, rule `max_min_lifetime`).
    public var maxMinLifetime: Int64
    /// How long before a reservation needs the capacity its preemptibles are preempted.
    public var notice: Int64
    /// What the adapter does to a preempted server.
    public var action: PreemptAction

    public enum PreemptAction: String, Sendable, CaseIterable { case delete, shelve }

    public init(
        defaultMinLifetime: Int64 = 3600, maxMinLifetime: Int64 = 7 * 86_400, notice: Int64 = 600,
        action: PreemptAction = .delete
    ) {
        self.defaultMinLifetime = defaultMinLifetime
        self.maxMinLifetime = maxMinLifetime
        self.notice = notice
        self.action = action
    }
}
