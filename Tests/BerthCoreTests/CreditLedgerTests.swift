import BerthJSON
import BerthTestSupport
import Testing

@testable import BerthCore

@Suite struct CreditLedgerTests {
    // MARK: Helpers (kept inside the suite: no top-level names)

    /// 2030-01-01T00:00:00Z.
    static let t0 = TestEpoch.year2030
    static let hour: Int64 = 3600

    static func at(_ seconds: Int64) -> Timestamp { t0 + seconds }
    static func ts(_ s: String) -> Timestamp { Timestamp(rfc3339: s)! }
    static func amount(_ s: String) -> CreditAmount { CreditAmount(s)! }

    /// A ledger with a clock and deterministic ids.
    struct Sim {
        var ledger: CreditLedger
        var now: Timestamp
        var n = 0

        init(enforce: Bool = true, now: Timestamp = CreditLedgerTests.t0) {
            ledger = CreditLedger(enforce: enforce)
            self.now = now
        }

        mutating func nextID() -> String {
            n += 1
            return "e\(n)"
        }

        @discardableResult
        mutating func grant(
            _ project: String, _ c: ResourceClass, _ amount: String, from: Timestamp? = nil, to: Timestamp? = nil
        ) throws -> LedgerEntry {
            let e = try ledger.planGrant(
                project: project, resourceClass: c, amount: CreditLedgerTests.amount(amount), validFrom: from,
                validTo: to, at: now, id: nextID())
            try ledger.apply(e)
            return e
        }

        /// Plans without applying.
        mutating func plan(
            _ lease: String, _ project: String, _ rates: [ResourceClass: Int64], _ start: Timestamp, _ end: Timestamp
        ) throws(BerthError) -> [LedgerEntry] {
            var k = n
            let out = try ledger.planLease(
                lease, project: project, rates: rates, start: start, end: end, now: now,
                newID: {
                    k += 1
                    return "e\(k)"
                })
            n = k
            return out
        }

        @discardableResult
        mutating func lease(
            _ lease: String, _ project: String, _ rates: [ResourceClass: Int64], _ start: Timestamp, _ end: Timestamp
        ) throws(BerthError) -> [LedgerEntry] {
            let entries = try plan(lease, project, rates, start, end)
            try ledger.apply(entries)
            return entries
        }

        @discardableResult
        mutating func release(_ lease: String) throws(BerthError) -> [LedgerEntry] {
            var k = n
            let entries = ledger.planRelease(
                lease, now: now,
                newID: {
                    k += 1
                    return "e\(k)"
                })
            n = k
            try ledger.apply(entries)
            return entries
        }

        func bal(_ p: String, _ c: ResourceClass) -> CreditBalance? { ledger.balance(project: p, now: now)[c] }
    }

    static func expectInsufficient(
        _ body: () throws(BerthError) -> Void, _ c: ResourceClass, required: String, available: String,
        sourceLocation: SourceLocation = #_sourceLocation
    ) {
        do throws(BerthError) {
            try body()
            Issue.record("expected -32003", sourceLocation: sourceLocation)
        } catch {
            #expect(error.code == .insufficientCredits, "\(error)", sourceLocation: sourceLocation)
            #expect(error.code.rawValue == -32003, sourceLocation: sourceLocation)
            #expect(error.dataJSON["reason"] == "insufficient_credits", sourceLocation: sourceLocation)
            #expect(error.data["resource_class"] == .string(c.rawValue), sourceLocation: sourceLocation)
            #expect(error.data["required"] == amount(required).json, "\(error)", sourceLocation: sourceLocation)
            #expect(error.data["available"] == amount(available).json, "\(error)", sourceLocation: sourceLocation)
            #expect(
                error.message.contains(c.rawValue) && error.message.contains(required), sourceLocation: sourceLocation)
        }
    }

    // MARK: CreditAmount

    @Test(arguments: [
        ("12.5", Int64(12_500_000)), ("0.000001", 1), ("7", 7_000_000), ("-3.25", -3_250_000), ("1.50", 1_500_000),
        ("0.0000010", 1), ("1e-6", 1), ("2.5E+3", 2_500_000_000), ("0", 0), ("-0", 0), ("007.000", 7_000_000),
        ("9223372036854.775807", Int64.max),
    ])
    func parsesDecimalsExactly(_ text: String, _ micro: Int64) {
        #expect(CreditAmount(text) == CreditAmount(micro: micro), "\(text)")
    }

    @Test(arguments: [
        "0.0000001", "1.", ".5", "abc", "", "1e", "--1", "+1", "1.2.3", " 1", "1 ", "9223372036854.775808",
        "100000000000000", "1e400", "0x10", "1,5",
    ])
    func rejectsWhatIsNotAnExactAmount(_ text: String) {
        #expect(CreditAmount(text) == nil, "\(text)")
    }

    @Test func explainsTooManyDecimals() {
        guard case .failure(let e) = CreditAmount.parse("0.1234567") else {
            Issue.record("accepted seven decimals")
            return
        }
        #expect(e.message.contains("more than 6 decimal places"))
    }

    @Test func readsJSONNumbersThroughTheirDecimalText() throws {
        #expect(try CreditAmount(json: JSONParser.parse("0.1")) == CreditAmount(micro: 100_000))
        #expect(try CreditAmount(json: JSONParser.parse("12.345678")) == CreditAmount(micro: 12_345_678))
        #expect(try CreditAmount(json: JSONParser.parse("800")) == CreditAmount(credits: 800))
        #expect(try CreditAmount(json: JSONParser.parse("2.0")) == CreditAmount(credits: 2))
        #expect(try CreditAmount(json: JSONParser.parse("0.000001")) == CreditAmount(micro: 1))
        #expect(try CreditAmount(json: JSONParser.parse("1e-6")) == CreditAmount(micro: 1))
        #expect(try CreditAmount(json: .string("2.000001")) == CreditAmount(micro: 2_000_001))
        #expect(throws: CreditAmount.ParseError.self) { try CreditAmount(json: JSONParser.parse("0.1234567")) }
        #expect(throws: CreditAmount.ParseError.self) {
            try CreditAmount(json: JSONParser.parse("0.30000000000000004"))
        }
        #expect(throws: CreditAmount.ParseError.self) { try CreditAmount(json: .int(Int64.max)) }
        #expect(throws: CreditAmount.ParseError.self) { try CreditAmount(json: .bool(true)) }
        #expect(throws: CreditAmount.ParseError.self) { try CreditAmount(json: .null) }
    }

    @Test func formatsAsDecimalAndJSON() {
        #expect(CreditAmount(micro: 12_500_000).decimalString == "12.5")
        #expect(CreditAmount(micro: 1).decimalString == "0.000001")
        #expect(CreditAmount(micro: -3_250_000).decimalString == "-3.25")
        #expect(CreditAmount(micro: 7_000_000).decimalString == "7")
        #expect(CreditAmount(micro: -1).decimalString == "-0.000001")
        #expect(CreditAmount.max.decimalString == "9223372036854.775807")
        #expect(CreditAmount(micro: Int64.min).decimalString == "-9223372036854.775808")
        #expect(CreditAmount(credits: 10).json == .int(10))
        #expect(CreditAmount(micro: 12_500_000).json == .double(12.5))
        #expect(JSON.object(["a": CreditAmount(micro: 5_164_722).json]).serialized() == #"{"a":5.164722}"#)
    }

    @Test func jsonRoundTripsExactlyUpToFifteenDigits() throws {
        var rng = SplitMix64(seed: 41)
        for k in 0..<20_000 {
            let bound: Int64 = k % 2 == 0 ? 999_999_999_999_999 : 1_000_000_000
            let a = CreditAmount(micro: Int64.random(in: -bound...bound, using: &rng))
            let text = a.json.serialized()
            let back = try CreditAmount(json: JSONParser.parse(text))
            #expect(back == a, "\(a) -> \(text)")
            #expect(CreditAmount(a.decimalString) == a)
        }
    }

    @Test func arithmeticIsCheckedAndOrdered() {
        let a = Self.amount("1.5")
        let b = Self.amount("0.25")
        #expect(a + b == Self.amount("1.75"))
        #expect(a - b == Self.amount("1.25"))
        #expect(b - a == Self.amount("-1.25"))
        #expect(-a == Self.amount("-1.5"))
        #expect(b < a && a > .zero && (b - a).isNegative)
        #expect(CreditAmount.max.adding(CreditAmount(micro: 1)) == nil)
        #expect(CreditAmount(micro: Int64.min).subtracting(CreditAmount(micro: 1)) == nil)
        #expect(CreditAmount.max.adding(.zero) == .max)
    }

    // MARK: LeaseCost

    @Test func costIsCeilOfUnitSecondsInMicroCredits() {
        #expect(LeaseCost.cost(units: 1, seconds: 36_000) == CreditAmount(credits: 10))
        #expect(LeaseCost.cost(units: 1, seconds: 1) == CreditAmount(micro: 278))  // 277.7…
        #expect(LeaseCost.cost(units: 8, seconds: 9) == CreditAmount(micro: 20_000))  // exact
        #expect(LeaseCost.cost(units: 1, seconds: 26_407) == CreditAmount(micro: 7_335_278))
        #expect(LeaseCost.cost(units: 3, seconds: 0) == .zero)
        #expect(LeaseCost.cost(units: 0, seconds: 100) == .zero)
        #expect(LeaseCost.cost(units: 1, seconds: -5) == .zero)
        #expect(LeaseCost.cost(units: Int64.max, seconds: Int64.max) == nil)
    }

    @Test func ratesFollowTheResourceClasses() {
        let models = GPUModelTable.builtIn
        func gpu(_ profile: String, _ count: Int64, model: String? = nil) -> ReservationRequest {
            var r = ReservationRequest(hosts: 1)
            r.kind = .gpu
            r.profile = profile
            r.gpuModel = model
            r.min = count
            r.max = count
            return r
        }
        func inst(vcpus: Int64, count: Int64, gpuProfile: String? = nil) -> ReservationRequest {
            var r = ReservationRequest(hosts: 1)
            r.kind = .instance
            r.vcpus = vcpus
            r.memoryMB = 1024
            r.diskGB = 10
            r.min = count
            r.max = count
            r.gpuProfile = gpuProfile
            return r
        }
        // Unplaced requests.
        #expect(LeaseCost.rates(of: [ReservationRequest(hosts: 3)], allocations: [], models: models) == [.hostHours: 3])
        #expect(LeaseCost.rates(of: [gpu("1g.5gb", 1)], allocations: [], models: models) == [.gpuSliceHours: 1])
        #expect(LeaseCost.rates(of: [gpu("7g.40gb", 2)], allocations: [], models: models) == [.gpuSliceHours: 16])
        #expect(LeaseCost.rates(of: [gpu("3g.20gb", 1)], allocations: [], models: models) == [.gpuSliceHours: 4])
        // A30: 4 slices.
        #expect(LeaseCost.rates(of: [gpu("1g.6gb", 1)], allocations: [], models: models) == [.gpuSliceHours: 2])
        #expect(
            LeaseCost.rates(of: [gpu("1g.10gb", 1, model: "A100-80GB")], allocations: [], models: models) == [
                .gpuSliceHours: 1
            ])
        #expect(
            LeaseCost.rates(of: [gpu("1g.10gb", 1, model: "A100-40GB")], allocations: [], models: models) == [
                .gpuSliceHours: 2
            ])
        // Ambiguous and unplaced: the dearest model.
        #expect(LeaseCost.rates(of: [gpu("1g.10gb", 1)], allocations: [], models: models) == [.gpuSliceHours: 2])
        #expect(
            LeaseCost.rates(of: [inst(vcpus: 4, count: 3, gpuProfile: "3g.20gb")], allocations: [], models: models)
                == [.vcpuHours: 12, .gpuSliceHours: 12])
        // Placed: priced by what is held.
        let minMax = ReservationRequest(hostsMin: 1, max: 4)
        #expect(
            LeaseCost.rates(
                of: [minMax], allocations: [[Allocation(host: "a"), Allocation(host: "b")]], models: models)
                == [.hostHours: 2])
        let on80 = Allocation(host: "g1", gpu: 0, profile: "1g.10gb", slot: 0, size: 1)
        let on40 = Allocation(host: "g2", gpu: 1, profile: "1g.10gb", slot: 2, size: 2)
        #expect(
            LeaseCost.rates(of: [gpu("1g.10gb", 2)], allocations: [[on80, on40]], models: models) == [.gpuSliceHours: 3]
        )
        let hosts = [
            Host(
                name: "g1", vcpus: 8, memoryMB: 1, diskGB: 1, gpus: [GPUSpec(model: "A100-80GB")], createdAt: Self.t0,
                updatedAt: Self.t0),
            Host(
                name: "g2", vcpus: 8, memoryMB: 1, diskGB: 1,
                gpus: [GPUSpec(model: "A100-80GB"), GPUSpec(model: "A100-40GB")], createdAt: Self.t0, updatedAt: Self.t0
            ),
        ]
        let lookup = LeaseCost.gpuModelLookup(hosts)
        var bare80 = on80
        bare80.size = nil
        var bare40 = on40
        bare40.size = nil
        #expect(
            LeaseCost.rates(
                of: [gpu("1g.10gb", 2)], allocations: [[bare80, bare40]], models: models, gpuModelAt: lookup)
                == [.gpuSliceHours: 3])
        let slots = Allocation(host: "g2", slots: 2)
        let slice = Allocation(host: "g2", gpu: 0, profile: "1g.10gb", slot: 0, size: 1)
        #expect(
            LeaseCost.rates(
                of: [inst(vcpus: 4, count: 2, gpuProfile: "1g.10gb")], allocations: [[slots, slice, slice]],
                models: models, gpuModelAt: lookup) == [.vcpuHours: 8, .gpuSliceHours: 2])
        // A lease's reservations, over a span.
        let lease = [
            Reservation(
                id: "r1", request: ReservationRequest(hosts: 1), status: .pending, allocations: [Allocation(host: "a")]),
            Reservation(id: "r2", request: gpu("1g.5gb", 1), status: .pending, allocations: []),
        ]
        let cost = try? LeaseCost.cost(of: lease, from: Self.t0, to: Self.at(10 * Self.hour))
        #expect(cost == [.hostHours: CreditAmount(credits: 10), .gpuSliceHours: CreditAmount(credits: 10)])
        #expect(LeaseCost.json(cost ?? [:]) == ["host_hours": 10, "gpu_slice_hours": 10])
        #expect(LeaseCost.parse(LeaseCost.json(cost ?? [:])) == cost)
    }

    @Test func anAbsurdCostIsAPolicyViolationNotACrash() {
        var huge = ReservationRequest(hosts: 1)
        huge.kind = .instance
        huge.vcpus = Int64.max / 2
        huge.min = 4
        huge.max = 4
        #expect(throws: BerthError.self) {
            try LeaseCost.cost(of: [huge], allocations: [], from: .distantPast, to: .distantFuture)
        }
        do throws(BerthError) {
            _ = try LeaseCost.cost(rates: [.hostHours: 1_000_000], from: .distantPast, to: .distantFuture)
            Issue.record("expected an error")
        } catch {
            #expect(error.code == .policyViolation && error.data["resource_class"] == "host_hours")
        }
    }

    // MARK: Rounding symmetry

    @Test func roundingIsSymmetricForRandomSpansAndCuts() throws {
        var rng = SplitMix64(seed: 2030)
        for _ in 0..<3000 {
            let u = Int64.random(in: 1...2000, using: &rng)
            let span = Int64.random(in: 1...10_000_000, using: &rng)
            let cut = Int64.random(in: 0...span, using: &rng)
            let whole = try #require(LeaseCost.cost(units: u, seconds: span))
            let kept = try #require(LeaseCost.cost(units: u, seconds: cut))
            let origin = Self.at(Int64.random(in: 0...1_000_000, using: &rng))
            let refund = try #require(LeaseCost.cost(units: u, origin: origin, from: origin + cut, to: origin + span))
            #expect(whole == kept + refund, "u=\(u) span=\(span) cut=\(cut)")
            // Pieces at arbitrary cuts sum to the whole.
            var bounds =
                [0, span]
                + (0..<Int.random(in: 0...6, using: &rng)).map { _ in Int64.random(in: 0...span, using: &rng) }
            bounds.sort()
            var sum = CreditAmount.zero
            for k in 0..<(bounds.count - 1) {
                sum += try #require(
                    LeaseCost.cost(units: u, origin: origin, from: origin + bounds[k], to: origin + bounds[k + 1]))
            }
            #expect(sum == whole)
        }
    }

    @Test func ledgerRefundsAreExactlyTheUnusedCost() throws {
        var rng = SplitMix64(seed: 99)
        for k in 0..<400 {
            var sim = Sim()
            // Several grants with staggered validity, so charges are split into pieces.
            let c = ResourceClass.allCases[k % 3]
            try sim.grant("p", c, "100000000", to: Self.at(3 * Self.hour + 17))
            try sim.grant("p", c, "100000000", from: Self.at(2 * Self.hour), to: Self.at(50 * Self.hour + 1))
            try sim.grant("p", c, "100000000")
            let u = Int64.random(in: 1...500, using: &rng)
            let start = Self.at(Int64.random(in: 0...(4 * Self.hour), using: &rng))
            let span = Int64.random(in: 1...(90 * Self.hour), using: &rng)
            let entries = try sim.lease("L", "p", [c: u], start, start + span)
            let charge =
                CreditLedger.refunds(in: entries).isEmpty ? entries.reduce(CreditAmount.zero) { $0 + $1.amount } : .zero
            #expect(charge == LeaseCost.cost(units: u, seconds: span))
            let cut = Int64.random(in: 0...span, using: &rng)
            sim.now = start + cut
            let refund = try sim.release("L")
            let refunded = CreditLedger.refunds(in: refund)[c] ?? .zero
            let kept = sim.ledger.held(lease: "L")[c] ?? .zero
            #expect(kept == LeaseCost.cost(units: u, seconds: cut), "u=\(u) span=\(span) cut=\(cut)")
            #expect(charge == kept + refunded)
            #expect(sim.ledger.audit() == [])
        }
    }

    // MARK: Grants with validity

    @Test func drawsPiecewiseAcrossAdjacentGrants() throws {
        var sim = Sim()
        let a = try sim.grant("p", .gpuSliceHours, "5", from: Self.at(0), to: Self.at(5 * Self.hour))
        let b = try sim.grant("p", .gpuSliceHours, "5", from: Self.at(5 * Self.hour), to: Self.at(10 * Self.hour))
        // [2h, 8h) at 1 unit: 3 from A for [2h, 5h), 3 from B for [5h, 8h).
        let entries = try sim.lease("L1", "p", [.gpuSliceHours: 1], Self.at(2 * Self.hour), Self.at(8 * Self.hour))
        #expect(entries.count == 1)
        let charge = try #require(entries.first)
        #expect(charge.kind == .charge && charge.amount == CreditAmount(credits: 6))
        #expect(charge.draws == [a.id: CreditAmount(credits: 3), b.id: CreditAmount(credits: 3)])
        #expect(charge.pieces.map(\.from) == [Self.at(2 * Self.hour), Self.at(5 * Self.hour)])
        #expect(sim.ledger.grant(a.id)?.remaining == CreditAmount(credits: 2))
        #expect(sim.ledger.grant(b.id)?.remaining == CreditAmount(credits: 2))
        // Neither grant alone could pay for [4h, 7h) (3 credits) in the right hours: 1 + 2 it is.
        let second = try sim.lease("L2", "p", [.gpuSliceHours: 1], Self.at(4 * Self.hour), Self.at(7 * Self.hour))
        #expect(second.first?.draws == [a.id: CreditAmount(credits: 1), b.id: CreditAmount(credits: 2)])
        // Now A has 1 left, B 0: [0h, 2h) needs 2 from A alone: refused, 1 available.
        Self.expectInsufficient(
            { () throws(BerthError) in
                _ = try sim.plan("L3", "p", [.gpuSliceHours: 1], Self.at(0), Self.at(2 * Self.hour))
            },
            .gpuSliceHours, required: "2", available: "1")
        // Shortening L1 to [2h, 6h) gives B back 2 credits (the latest time first).
        sim.now = Self.at(Self.hour)
        let shorten = try sim.lease("L1", "p", [.gpuSliceHours: 1], Self.at(2 * Self.hour), Self.at(6 * Self.hour))
        #expect(
            shorten.count == 1 && shorten[0].kind == .refund && shorten[0].draws == [b.id: CreditAmount(credits: 2)])
        #expect(
            sim.bal("p", .gpuSliceHours)
                == CreditBalance(
                    granted: CreditAmount(credits: 10), spent: CreditAmount(credits: 7),
                    available: CreditAmount(credits: 3), expired: .zero))
        #expect(sim.ledger.audit() == [])
    }

    @Test func piecesKeepTheWholeSpanRounding() throws {
        var sim = Sim()
        // Boundaries at odd seconds: each piece's ceil would overcharge; the cumulative form does not.
        try sim.grant("p", .vcpuHours, "1000", to: Self.at(1001))
        try sim.grant("p", .vcpuHours, "1000", from: Self.at(1001), to: Self.at(2003))
        try sim.grant("p", .vcpuHours, "1000", from: Self.at(2003))
        let e = try sim.lease("L", "p", [.vcpuHours: 7], Self.at(0), Self.at(3007))
        #expect(e.count == 1 && e[0].pieces.count == 3)
        #expect(e[0].amount == LeaseCost.cost(units: 7, seconds: 3007))
        #expect(e[0].pieces.reduce(CreditAmount.zero) { $0 + $1.amount } == e[0].amount)
    }

    @Test func prefersTheGrantThatExpiresFirstThenTheOldest() throws {
        var sim = Sim()
        let forever = try sim.grant("p", .hostHours, "100")
        let late = try sim.grant("p", .hostHours, "3", to: Self.at(100 * Self.hour))
        let soon = try sim.grant("p", .hostHours, "2", to: Self.at(50 * Self.hour))
        let soon2 = try sim.grant("p", .hostHours, "2", to: Self.at(50 * Self.hour))
        let e = try sim.lease("L", "p", [.hostHours: 1], Self.at(0), Self.at(8 * Self.hour))
        #expect(e[0].pieces.map(\.grantID) == [soon.id, soon2.id, late.id, forever.id])
        #expect(
            e[0].draws == [
                soon.id: CreditAmount(credits: 2), soon2.id: CreditAmount(credits: 2),
                late.id: CreditAmount(credits: 3), forever.id: CreditAmount(credits: 1),
            ])
        // Early end after 5 h: refund 3, last drawn first (forever 1, then late 2).
        sim.now = Self.at(5 * Self.hour)
        let r = try sim.release("L")
        #expect(r[0].pieces.map(\.grantID) == [forever.id, late.id])
        #expect(r[0].draws == [forever.id: CreditAmount(credits: 1), late.id: CreditAmount(credits: 2)])
        #expect(sim.ledger.grant(late.id)?.remaining == CreditAmount(credits: 2))
        #expect(sim.ledger.audit() == [])
    }

    @Test func aLeaseRunningPastEveryValidGrantIsRefused() throws {
        var sim = Sim()
        try sim.grant("p", .gpuSliceHours, "100", from: Self.at(0), to: Self.at(10 * Self.hour))
        try sim.grant("p", .hostHours, "100")
        let before = sim.ledger.entries
        // 4 eighths over [8h, 12h): 16 needed, only [8h, 10h) is covered: 8.
        do throws(BerthError) {
            _ = try sim.plan(
                "L", "p", [.hostHours: 1, .gpuSliceHours: 4], Self.at(8 * Self.hour), Self.at(12 * Self.hour))
            Issue.record("expected -32003")
        } catch {
            #expect(error.code == .insufficientCredits)
            #expect(
                error.dataJSON == [
                    "reason": "insufficient_credits", "resource_class": "gpu_slice_hours", "required": 16,
                    "available": 8, "short_from": .string(Self.at(10 * Self.hour).rfc3339),
                ])
            #expect(error.message.contains("needs 16") && error.message.contains("cover only 8"), "\(error.message)")
        }
        #expect(sim.ledger.entries == before)
        // Entirely outside: nothing available.
        Self.expectInsufficient(
            { () throws(BerthError) in
                _ = try sim.plan("L", "p", [.gpuSliceHours: 1], Self.at(20 * Self.hour), Self.at(21 * Self.hour))
            },
            .gpuSliceHours, required: "1", available: "0")
        // No grant at all for the class.
        Self.expectInsufficient(
            { () throws(BerthError) in _ = try sim.plan("L", "p", [.vcpuHours: 2], Self.at(0), Self.at(1800)) },
            .vcpuHours, required: "1", available: "0")
        // An extension past valid_to is refused the same way, for the extension only.
        try sim.lease("L", "p", [.gpuSliceHours: 1], Self.at(6 * Self.hour), Self.at(9 * Self.hour))
        Self.expectInsufficient(
            { () throws(BerthError) in
                _ = try sim.plan("L", "p", [.gpuSliceHours: 1], Self.at(6 * Self.hour), Self.at(11 * Self.hour))
            },
            .gpuSliceHours, required: "2", available: "1")
        let planned = try sim.ledger.planCharge(
            project: "p", rates: [.gpuSliceHours: 1], from: Self.at(9 * Self.hour), to: Self.at(11 * Self.hour))
        guard case .failure(let short) = planned else {
            Issue.record("expected a shortfall")
            return
        }
        #expect(
            short.required == CreditAmount(credits: 2) && short.available == CreditAmount(credits: 1)
                && short.shortFrom == Self.at(10 * Self.hour))
    }

    @Test func withoutEnforcementChargesAreRecordedAndAvailableGoesNegative() throws {
        var sim = Sim(enforce: false)
        try sim.grant("p", .hostHours, "3")
        let e = try sim.lease("L", "p", [.hostHours: 1], Self.at(0), Self.at(5 * Self.hour))
        #expect(e[0].amount == CreditAmount(credits: 5) && e[0].unfunded == CreditAmount(credits: 2))
        #expect(
            sim.bal("p", .hostHours)
                == CreditBalance(
                    granted: CreditAmount(credits: 3), spent: CreditAmount(credits: 5),
                    available: CreditAmount(credits: -2), expired: .zero))
        // No grant at all: still recorded.
        try sim.lease("M", "q", [.vcpuHours: 2], Self.at(0), Self.at(Self.hour))
        #expect(sim.bal("q", .vcpuHours)?.available == CreditAmount(credits: -2))
        // The unfunded part is refunded first.
        sim.now = Self.at(4 * Self.hour)
        let r = try sim.release("L")
        #expect(r[0].amount == CreditAmount(credits: 1) && r[0].unfunded == CreditAmount(credits: 1))
        #expect(sim.bal("p", .hostHours)?.available == CreditAmount(credits: -1))
        // The same entries replay into an enforcing ledger unchanged.
        let replay = try CreditLedger(entries: sim.ledger.entries, enforce: true)
        #expect(replay.balance(project: "p", now: sim.now) == sim.ledger.balance(project: "p", now: sim.now))
        #expect(replay.audit() == [])
    }

    @Test func expiredRemaindersAreNotAvailable() throws {
        var sim = Sim()
        try sim.grant("p", .hostHours, "10", to: Self.at(Self.hour))
        try sim.grant("p", .hostHours, "4", from: Self.at(100 * Self.hour))
        try sim.lease("L", "p", [.hostHours: 2], Self.at(0), Self.at(1800))
        #expect(
            sim.bal("p", .hostHours)
                == CreditBalance(
                    granted: CreditAmount(credits: 14), spent: CreditAmount(credits: 1),
                    available: CreditAmount(credits: 13), expired: .zero))
        sim.now = Self.at(Self.hour)
        #expect(
            sim.bal("p", .hostHours)
                == CreditBalance(
                    granted: CreditAmount(credits: 14), spent: CreditAmount(credits: 1),
                    available: CreditAmount(credits: 4), expired: CreditAmount(credits: 9)))
        #expect(sim.ledger.balance(project: "nobody", now: sim.now).isEmpty)
    }

    @Test func acceptsExactlyAsManyLeasesAsTheBalanceCovers() throws {
        var sim = Sim()
        try sim.grant("p", .gpuSliceHours, "100")
        var accepted = 0
        for k in 0..<32 {
            // 1g.5gb for 7 h: 7 credits each; 100 covers 14.
            do throws(BerthError) {
                try sim.lease(
                    "L\(k)", "p", [.gpuSliceHours: 1], Self.at(Int64(k) * 60), Self.at(Int64(k) * 60 + 7 * Self.hour))
                accepted += 1
            } catch {
                #expect(error.code == .insufficientCredits)
            }
        }
        #expect(accepted == 14)
        #expect(sim.bal("p", .gpuSliceHours)?.available == CreditAmount(credits: 2))
    }

    // MARK: Applying, replay, JSON

    @Test func applyIsAllOrNothingAndRefusesStalePlans() throws {
        var sim = Sim()
        try sim.grant("p", .hostHours, "50")
        try sim.grant("p", .vcpuHours, "50")
        var plan = try sim.plan("L", "p", [.hostHours: 1, .vcpuHours: 2], Self.at(0), Self.at(2 * Self.hour))
        #expect(plan.count == 2)
        let balance = sim.ledger.balance(project: "p", now: sim.now)
        let count = sim.ledger.entries.count
        var tampered = plan
        tampered[1].amount = CreditAmount(credits: 1)
        #expect(throws: BerthError.self) { try sim.ledger.apply(tampered) }
        #expect(sim.ledger.balance(project: "p", now: sim.now) == balance)
        #expect(sim.ledger.entries.count == count && sim.ledger.held(lease: "L").isEmpty && sim.ledger.audit() == [])
        // Another change lands first: the plan is stale.
        try sim.grant("p", .hostHours, "1")
        #expect(throws: BerthError.self) { try sim.ledger.apply(plan) }
        plan = try sim.plan("L", "p", [.hostHours: 1, .vcpuHours: 2], Self.at(0), Self.at(2 * Self.hour))
        try sim.ledger.apply(plan)
        #expect(
            sim.ledger.held(lease: "L") == [.hostHours: CreditAmount(credits: 2), .vcpuHours: CreditAmount(credits: 4)])
        // A lease belongs to one project.
        #expect(throws: BerthError.self) { try sim.plan("L", "q", [.hostHours: 1], Self.at(0), Self.at(Self.hour)) }
    }

    @Test func adjustmentsChangeAGrantButNeverBelowZero() throws {
        var sim = Sim()
        let g = try sim.grant("p", .hostHours, "10")
        try sim.lease("L", "p", [.hostHours: 1], Self.at(0), Self.at(6 * Self.hour))
        #expect(throws: BerthError.self) {
            try sim.ledger.planAdjustment(grantID: g.id, delta: CreditAmount(credits: -5), at: sim.now)
        }
        let down = try sim.ledger.planAdjustment(
            grantID: g.id, delta: CreditAmount(credits: -4), note: "typo", at: sim.now, id: sim.nextID())
        try sim.ledger.apply(down)
        #expect(
            sim.bal("p", .hostHours)
                == CreditBalance(
                    granted: CreditAmount(credits: 6), spent: CreditAmount(credits: 6), available: .zero, expired: .zero
                ))
        let up = try sim.ledger.planAdjustment(grantID: g.id, delta: Self.amount("0.5"), at: sim.now, id: sim.nextID())
        try sim.ledger.apply(up)
        #expect(sim.bal("p", .hostHours)?.available == Self.amount("0.5"))
        #expect(throws: BerthError.self) {
            try sim.ledger.planAdjustment(grantID: "nope", delta: Self.amount("1"), at: sim.now)
        }
        #expect(sim.ledger.audit() == [])
    }

    @Test func entriesRoundTripThroughJSONAndReplay() throws {
        var sim = Sim()
        try sim.grant("p", .gpuSliceHours, "10", from: Self.at(0), to: Self.at(5 * Self.hour))
        try sim.grant("p", .gpuSliceHours, "12.75")
        try sim.lease("L", "p", [.gpuSliceHours: 3], Self.at(Self.hour), Self.at(7 * Self.hour + 13))
        sim.now = Self.at(2 * Self.hour + 5)
        try sim.lease("L", "p", [.gpuSliceHours: 2], Self.at(Self.hour), Self.at(9 * Self.hour))
        sim.now = Self.at(3 * Self.hour)
        try sim.release("L")
        let texts = sim.ledger.entries.map { $0.json.serialized() }
        let back = try texts.map { try #require(LedgerEntry(json: JSONParser.parse($0))) }
        #expect(back == sim.ledger.entries)
        let replay = try CreditLedger(entries: back)
        #expect(replay.balance(project: "p", now: sim.now) == sim.ledger.balance(project: "p", now: sim.now))
        #expect(replay.holdings == sim.ledger.holdings)
        #expect(replay.audit() == [])
        let page1 = sim.ledger.entries(project: "p", limit: 2)
        #expect(page1.items.map(\.seq) == [1, 2] && page1.next == 2)
        let rest = sim.ledger.entries(project: "p", afterSeq: 2, limit: 100)
        #expect(rest.items.count == sim.ledger.entries.count - 2 && rest.next == nil)
        let params = try CreditLedgerParams.parse(["project_id": "p", "cursor": "2", "limit": 1])
        #expect(params.page(of: sim.ledger)["next_cursor"] == "3")
        #expect(throws: BerthError.self) { try CreditLedgerParams.parse(["project_id": "p", "cursor": "x"]) }
    }

    // MARK: credits.grant params

    @Test func grantParamsParse() throws {
        let p = try CreditGrantParams.parse(
            [
                "project_id": "astro", "resource_class": "gpu_slice_hours", "amount": 800.5,
                "valid_from": "2030-01-01T00:00:00Z", "valid_to": "2030-02-01T00:00:00+01:00",
                "note": "allocation 2030",
                "idempotency_key": "k1",
            ])
        #expect(p.projectID == "astro" && p.resourceClass == .gpuSliceHours && p.amount == Self.amount("800.5"))
        #expect(p.validFrom == Self.ts("2030-01-01T00:00:00Z") && p.validTo == Self.ts("2030-01-31T23:00:00Z"))
        #expect(p.note == "allocation 2030")
        let s = try CreditGrantParams.parse(["project_id": "a", "resource_class": "vcpu_hours", "amount": "0.000001"])
        #expect(s.amount == CreditAmount(micro: 1) && s.validFrom == nil && s.validTo == nil)
        let e = try CreditLedger().planGrant(p, at: Self.t0, id: "g1")
        #expect(e.json["valid_to"] == "2030-01-31T23:00:00Z" && e.json["amount"] == .double(800.5))
    }

    static let badGrantParams: [(JSON, String, String)] = [
        (["project_id": "a", "resource_class": "host_hours", "amount": -5], "amount", "greater than 0"),
        (["project_id": "a", "resource_class": "host_hours", "amount": 0], "amount", "greater than 0"),
        (["project_id": "a", "resource_class": "host_hours", "amount": "0.0000001"], "amount", "decimal places"),
        (["project_id": "a", "resource_class": "host_hours", "amount": true], "amount", "expected a number"),
        (
            ["project_id": "a", "resource_class": "gpu_hours", "amount": 5], "resource_class",
            "host_hours, gpu_slice_hours, vcpu_hours"
        ),
        (
            [
                "project_id": "a", "resource_class": "host_hours", "amount": 5, "valid_from": "2030-02-01T00:00:00Z",
                "valid_to": "2030-01-01T00:00:00Z",
            ],
            "valid_to", "after valid_from"
        ),
        (
            [
                "project_id": "a", "resource_class": "host_hours", "amount": 5, "valid_from": "2030-02-01T00:00:00Z",
                "valid_to": "2030-02-01T00:00:00Z",
            ],
            "valid_to", "after valid_from"
        ),
        (["resource_class": "host_hours", "amount": 5], "project_id", "required"),
        (["project_id": "a", "resource_class": "host_hours", "amount": 5, "amonut": 5], "amonut", "unknown field"),
        (["project_id": "a", "resource_class": "host_hours", "amount": 5, "valid_to": "soon"], "valid_to", "RFC 3339"),
    ]

    @Test(arguments: badGrantParams)
    func grantParamsRejectBadInput(_ params: JSON, _ path: String, _ words: String) {
        do throws(BerthError) {
            _ = try CreditGrantParams.parse(params)
            Issue.record("accepted \(params.serialized())")
        } catch {
            #expect(error.code == .invalidParams)
            let errs = error.fieldErrors
            #expect(errs.contains { $0.path == path && $0.message.contains(words) }, "\(errs)")
        }
    }

    @Test func grantParamsReportEveryProblemAtOnce() {
        do throws(BerthError) {
            _ = try CreditGrantParams.parse([
                "project_id": "a", "resource_class": "bogus", "amount": -1, "valid_from": "2030-02-01T00:00:00Z",
                "valid_to": "2030-01-01T00:00:00Z",
            ])
            Issue.record("accepted")
        } catch {
            #expect(Set(error.fieldErrors.map(\.path)) == ["resource_class", "amount", "valid_to"])
        }
        #expect(throws: BerthError.self) {
            try CreditLedger().planGrant(project: "a", resourceClass: .hostHours, amount: .zero, at: Self.t0)
        }
    }

    // MARK: The worked example of docs/credits.md

    @Test func docsWorkedExample() throws {
        var sim = Sim(now: Self.ts("2030-01-05T09:00:00Z"))
        let g = try sim.grant(
            "astro", .gpuSliceHours, "100", from: Self.ts("2030-01-01T00:00:00Z"), to: Self.ts("2030-02-01T00:00:00Z"))
        #expect(
            sim.bal("astro", .gpuSliceHours)
                == CreditBalance(
                    granted: CreditAmount(credits: 100), spent: .zero, available: CreditAmount(credits: 100),
                    expired: .zero))
        // 1 × 1g.5gb on an A100-40GB (one eighth) for 10 h.
        var req = ReservationRequest(hosts: 1)
        req.kind = .gpu
        req.profile = "1g.5gb"
        req.gpuModel = "A100-40GB"
        let start = Self.ts("2030-01-10T08:00:00Z")
        let rates = LeaseCost.rates(of: [req], allocations: [], models: .builtIn)
        #expect(rates == [.gpuSliceHours: 1])
        #expect(
            try LeaseCost.cost(rates: rates, from: start, to: Self.ts("2030-01-10T18:00:00Z")) == [
                .gpuSliceHours: CreditAmount(credits: 10)
            ])
        let create = try sim.lease("L", "astro", rates, start, Self.ts("2030-01-10T18:00:00Z"))
        #expect(
            create.map(\.amount) == [CreditAmount(credits: 10)] && create[0].draws == [g.id: CreditAmount(credits: 10)])
        #expect(sim.bal("astro", .gpuSliceHours)?.available == CreditAmount(credits: 90))
        // Extend to 20:30: 2.5 more.
        let extend = try sim.lease("L", "astro", rates, start, Self.ts("2030-01-10T20:30:00Z"))
        #expect(extend.map(\.kind) == [.charge] && extend[0].amount == Self.amount("2.5"))
        #expect(
            sim.bal("astro", .gpuSliceHours)
                == CreditBalance(
                    granted: CreditAmount(credits: 100), spent: Self.amount("12.5"), available: Self.amount("87.5"),
                    expired: .zero))
        // End early at 15:20:07 (7 h 20 min 7 s = 26 407 s used).
        sim.now = Self.ts("2030-01-10T15:20:07Z")
        let end = try sim.lease("L", "astro", rates, start, sim.now)
        #expect(end.map(\.kind) == [.refund] && end[0].amount == Self.amount("5.164722"))
        #expect(sim.ledger.held(lease: "L") == [.gpuSliceHours: Self.amount("7.335278")])
        #expect(
            sim.bal("astro", .gpuSliceHours)
                == CreditBalance(
                    granted: CreditAmount(credits: 100), spent: Self.amount("7.335278"),
                    available: Self.amount("92.664722"), expired: .zero))
        #expect(
            sim.ledger.balanceJSON(project: "astro", now: sim.now).serialized()
                == #"{"gpu_slice_hours":{"available":92.664722,"expired":0,"granted":100,"spent":7.335278}}"#)
        // A 3g.20gb (four eighths) lease across the grant's valid_to is refused.
        Self.expectInsufficient(
            { () throws(BerthError) in
                _ = try sim.plan(
                    "M", "astro", [.gpuSliceHours: 4], Self.ts("2030-01-31T20:00:00Z"), Self.ts("2030-02-01T04:00:00Z"))
            }, .gpuSliceHours, required: "32", available: "16")
        // Deleting a pending lease gives everything back.
        let before = sim.ledger.balance(project: "astro", now: sim.now)
        try sim.lease(
            "N", "astro", [.gpuSliceHours: 2], Self.ts("2030-01-20T00:00:00Z"), Self.ts("2030-01-20T03:00:00Z"))
        #expect(sim.bal("astro", .gpuSliceHours)?.available == Self.amount("86.664722"))
        let del = try sim.release("N")
        #expect(CreditLedger.refunds(in: del) == [.gpuSliceHours: CreditAmount(credits: 6)])
        #expect(sim.ledger.balance(project: "astro", now: sim.now) == before)
    }

    // MARK: Property: random sequences of grants and lease changes

    struct ModelLease {
        var id: String
        var project: String
        var rates: [ResourceClass: Int64]
        var start: Timestamp
        var end: Timestamp
        /// Where its pricing starts (rounding origin); nil once its rates changed while active.
        var origin: Timestamp?
        /// End of the time it still holds.
        var heldEnd: Timestamp
        var deleted = false
    }

    static func randomRates(_ rng: inout SplitMix64) -> [ResourceClass: Int64] {
        var r: [ResourceClass: Int64] = [:]
        for c in ResourceClass.allCases where Bool.random(using: &rng) { r[c] = Int64.random(in: 1...16, using: &rng) }
        if r.isEmpty { r[.allCases.randomElement(using: &rng)!] = Int64.random(in: 1...8, using: &rng) }
        return r
    }

    /// Balances recomputed from the entries alone, independently of the ledger's own bookkeeping.
    static func sums(_ entries: [LedgerEntry]) -> (
        granted: [String: CreditAmount], spent: [String: CreditAmount], remaining: [String: CreditAmount]
    ) {
        var granted: [String: CreditAmount] = [:]
        var spent: [String: CreditAmount] = [:]
        var remaining: [String: CreditAmount] = [:]
        for e in entries {
            let key = "\(e.projectID)/\(e.resourceClass.rawValue)"
            switch e.kind {
            case .grant:
                granted[key, default: .zero] += e.amount
                remaining[e.id, default: .zero] += e.amount
            case .adjustment:
                granted[key, default: .zero] += e.amount
                remaining[e.grantID!, default: .zero] += e.amount
            case .charge:
                spent[key, default: .zero] += e.amount
                for (g, v) in e.draws { remaining[g, default: .zero] -= v }
            case .refund:
                spent[key, default: .zero] -= e.amount
                for (g, v) in e.draws { remaining[g, default: .zero] += v }
            }
        }
        return (granted, spent, remaining)
    }

    static func check(_ sim: Sim, _ leases: [String: ModelLease], seed: UInt64, step: Int) {
        let ctx = "seed \(seed) step \(step)"
        #expect(sim.ledger.audit() == [], "\(ctx)")
        let (granted, spent, remaining) = sums(sim.ledger.entries)
        for p in ["p1", "p2"] {
            let bal = sim.ledger.balance(project: p, now: sim.now)
            for (c, b) in bal {
                let key = "\(p)/\(c.rawValue)"
                #expect(b.granted == granted[key] ?? .zero, "\(ctx) \(key)")
                #expect(b.spent == spent[key] ?? .zero, "\(ctx) \(key)")
                #expect(b.granted - b.spent == b.available + b.expired, "\(ctx) \(key)")
                if sim.ledger.enforce {
                    #expect(!b.available.isNegative && !b.expired.isNegative, "\(ctx) \(key) \(b)")
                }
            }
        }
        for (g, v) in remaining {
            #expect(sim.ledger.grant(g)?.remaining == v, "\(ctx) grant \(g)")
            if sim.ledger.enforce { #expect(!v.isNegative, "\(ctx) grant \(g)") }
        }
        if sim.ledger.enforce { #expect(sim.ledger.entries.allSatisfy { $0.unfunded.isZero }, "\(ctx)") }
        for (_, l) in leases {
            guard let origin = l.origin else { continue }
            var expected: [ResourceClass: CreditAmount] = [:]
            for (c, u) in l.rates {
                let v = LeaseCost.cost(units: u, seconds: l.heldEnd - origin)!
                if !v.isZero { expected[c] = v }
            }
            #expect(sim.ledger.held(lease: l.id) == expected, "\(ctx) lease \(l.id) \(l)")
        }
    }

    @Test(arguments: [true, false])
    func randomSequencesKeepTheLedgerExact(enforce: Bool) throws {
        let hour = Self.hour
        var coverage: [String: Int] = [:]
        var totalRefusals = 0
        for seed in UInt64(1)...24 {
            var rng = SplitMix64(seed: seed &* 7919 &+ (enforce ? 0 : 1))
            var sim = Sim(enforce: enforce)
            var leases: [String: ModelLease] = [:]
            var nextLease = 0
            var refusals = 0
            for step in 0..<160 {
                let roll = Int.random(in: 0..<100, using: &rng)
                let live = leases.values.filter { !$0.deleted && $0.end > sim.now }.sorted { $0.id < $1.id }
                let pending = live.filter { $0.start > sim.now }
                let active = live.filter { $0.start <= sim.now }
                func attempt(_ body: () throws(BerthError) -> Void) throws {
                    do throws(BerthError) {
                        try body()
                    } catch {
                        #expect(enforce && error.code == .insufficientCredits, "seed \(seed) step \(step): \(error)")
                        if let r = error.data["required"], let a = error.data["available"] {
                            #expect(try CreditAmount(json: a) < CreditAmount(json: r))
                        }
                        refusals += 1
                    }
                }
                switch roll {
                case 0..<14:  // grant, sometimes with validity
                    let c = ResourceClass.allCases.randomElement(using: &rng)!
                    let amount = CreditAmount(micro: Int64.random(in: 1...400_000_000, using: &rng))
                    var from: Timestamp? = nil
                    var to: Timestamp? = nil
                    switch Int.random(in: 0..<4, using: &rng) {
                    case 0: break
                    case 1: to = sim.now + Int64.random(in: 1...(40 * hour), using: &rng)
                    case 2: from = sim.now + Int64.random(in: -10 * hour...(20 * hour), using: &rng)
                    default:
                        from = sim.now + Int64.random(in: -10 * hour...(20 * hour), using: &rng)
                        to = from! + Int64.random(in: 1...(40 * hour), using: &rng)
                    }
                    let e = try sim.ledger.planGrant(
                        project: ["p1", "p2"].randomElement(using: &rng)!, resourceClass: c, amount: amount,
                        validFrom: from,
                        validTo: to, at: sim.now, id: sim.nextID())
                    try sim.ledger.apply(e)
                case 14..<34:  // create
                    nextLease += 1
                    let id = "L\(nextLease)"
                    let project = ["p1", "p2"].randomElement(using: &rng)!
                    let rates = Self.randomRates(&rng)
                    let start =
                        sim.now + (Bool.random(using: &rng) ? 0 : Int64.random(in: 1...(20 * hour), using: &rng))
                    let end = start + Int64.random(in: 1...(30 * hour), using: &rng)
                    try attempt { () throws(BerthError) in
                        try sim.lease(id, project, rates, start, end)
                        leases[id] = ModelLease(
                            id: id, project: project, rates: rates, start: start, end: end, origin: start, heldEnd: end)
                    }
                case 34..<44:  // create, then delete before start: balances exactly as before
                    nextLease += 1
                    let id = "L\(nextLease)"
                    let project = ["p1", "p2"].randomElement(using: &rng)!
                    let rates = Self.randomRates(&rng)
                    let start = sim.now + Int64.random(in: 1...(20 * hour), using: &rng)
                    let end = start + Int64.random(in: 1...(30 * hour), using: &rng)
                    let then = sim.now
                    let before = (
                        sim.ledger.balance(project: project, now: then), Self.sums(sim.ledger.entries).remaining
                    )
                    try attempt { () throws(BerthError) in
                        try sim.lease(id, project, rates, start, end)
                        if Bool.random(using: &rng) {
                            sim.now = sim.now + Int64.random(in: 0..<(start - sim.now), using: &rng)
                        }
                        if Bool.random(using: &rng) {
                            try sim.release(id)
                        } else {
                            try sim.lease(id, project, rates, start, start)
                        }
                        leases[id] = ModelLease(
                            id: id, project: project, rates: rates, start: start, end: end, origin: start,
                            heldEnd: start, deleted: true)
                    }
                    #expect(sim.ledger.balance(project: project, now: then) == before.0, "seed \(seed) step \(step)")
                    #expect(Self.sums(sim.ledger.entries).remaining == before.1, "seed \(seed) step \(step)")
                    #expect(sim.ledger.held(lease: id).isEmpty)
                case 44..<56:  // extend
                    guard var l = live.randomElement(using: &rng) else { continue }
                    let end = l.end + Int64.random(in: 1...(10 * hour), using: &rng)
                    try attempt { () throws(BerthError) in
                        try sim.lease(l.id, l.project, l.rates, l.start, end)
                        l.end = end
                        l.heldEnd = end
                        leases[l.id] = l
                    }
                case 56..<66:  // shorten
                    guard var l = live.randomElement(using: &rng) else { continue }
                    let lo = max(l.start, sim.now) + 1
                    guard lo < l.end else { continue }
                    let end = Timestamp(seconds: Int64.random(in: lo.seconds..<l.end.seconds, using: &rng))
                    try sim.lease(l.id, l.project, l.rates, l.start, end)
                    l.end = end
                    l.heldEnd = end
                    leases[l.id] = l
                case 66..<72:  // delete a pending lease
                    guard var l = pending.randomElement(using: &rng) else { continue }
                    try sim.release(l.id)
                    l.deleted = true
                    l.heldEnd = l.start
                    leases[l.id] = l
                    #expect(sim.ledger.held(lease: l.id).isEmpty)
                case 72..<78:  // end an active lease early (or delete it: the same refund)
                    guard var l = active.randomElement(using: &rng) else { continue }
                    if Bool.random(using: &rng) {
                        try sim.release(l.id)
                    } else {
                        try sim.lease(l.id, l.project, l.rates, l.start, sim.now)
                    }
                    l.end = sim.now
                    l.heldEnd = sim.now
                    l.deleted = true
                    leases[l.id] = l
                case 78..<83:  // move or resize a pending lease: full refund, new charge
                    guard var l = pending.randomElement(using: &rng) else { continue }
                    let start = sim.now + Int64.random(in: 1...(20 * hour), using: &rng)
                    let end = start + Int64.random(in: 1...(30 * hour), using: &rng)
                    let rates = Bool.random(using: &rng) ? Self.randomRates(&rng) : l.rates
                    try attempt { () throws(BerthError) in
                        try sim.lease(l.id, l.project, rates, start, end)
                        (l.start, l.end, l.rates, l.origin, l.heldEnd) = (start, end, rates, start, end)
                        leases[l.id] = l
                    }
                case 83..<87:  // change the rates of an active lease
                    guard var l = active.randomElement(using: &rng) else { continue }
                    let rates = Self.randomRates(&rng)
                    try attempt { () throws(BerthError) in
                        try sim.lease(l.id, l.project, rates, l.start, l.end)
                        l.rates = rates
                        l.origin = nil
                        leases[l.id] = l
                    }
                default:  // time passes
                    sim.now = sim.now + Int64.random(in: 0...(6 * hour), using: &rng)
                    for (id, var l) in leases where !l.deleted && l.end <= sim.now {
                        l.deleted = true  // ended: holds its whole charge
                        leases[id] = l
                    }
                }
                Self.check(sim, leases, seed: seed, step: step)
            }
            let replay = try CreditLedger(entries: sim.ledger.entries, enforce: enforce)
            #expect(replay.holdings == sim.ledger.holdings && replay.audit() == [])
            for p in ["p1", "p2"] {
                #expect(replay.balance(project: p, now: sim.now) == sim.ledger.balance(project: p, now: sim.now))
            }
            if !enforce { #expect(refusals == 0) }
            totalRefusals += refusals
            for e in sim.ledger.entries {
                coverage[e.kind.rawValue, default: 0] += 1
                if e.kind == .charge && Set(e.pieces.map(\.from)).count > 1 {
                    coverage["split charges", default: 0] += 1
                }
                if e.kind == .charge && e.origin != e.from { coverage["extensions", default: 0] += 1 }
                if e.kind == .refund
                    && e.from
                        != sim.ledger.entries.first(where: { $0.kind == .charge && $0.leaseID == e.leaseID })?.from
                {
                    coverage["partial refunds", default: 0] += 1
                }
                if e.draws.count > 1 { coverage["multi-grant", default: 0] += 1 }
                if !e.unfunded.isZero { coverage["unfunded", default: 0] += 1 }
            }
        }
        // The sequences reach every path: split charges, extensions, partial refunds, refusals.
        for k in ["charge", "refund", "grant", "split charges", "extensions", "partial refunds", "multi-grant"] {
            #expect(coverage[k, default: 0] > 20, "\(k)")
        }
        #expect(enforce ? totalRefusals > 20 : coverage["unfunded", default: 0] > 20)
    }
}
