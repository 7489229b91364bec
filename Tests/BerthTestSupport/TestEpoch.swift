import BerthCore

/// Fixed instants the tests count from, so that expected timestamps are literals and a failure
/// prints the same times on every run.
public enum TestEpoch {
    /// 2030-01-01T00:00:00Z: the manual clock's start in the scheduler tests, as in the integration
    /// suite (`berthtest.DEFAULT_NOW`).
    public static let year2030 = Timestamp(seconds: 1_893_456_000)

    /// 1_900_000_000 s (2030-03-17T17:46:40Z): a round number of seconds for tests that only need
    /// some instant well after 1970.
    public static let roundSeconds = Timestamp(seconds: 1_900_000_000)
}
