import Testing

@testable import BerthBlazar

@Suite("Blazar's default policy and noauth tokens")
struct BlazarCallerTests {
    @Test func membersWriteReadersReadAdminsDoBoth() {
        let member = BlazarCaller(userID: "u", projectID: "p", roles: ["member", "reader"])
        let reader = BlazarCaller(userID: "u", projectID: "p", roles: ["reader"])
        let admin = BlazarCaller(userID: "a", projectID: "q", roles: ["admin"])
        #expect(member.mayWrite(project: "p") && member.mayRead(project: "p"))
        #expect(!member.mayRead(project: "other") && !member.mayWrite(project: "other"))
        #expect(reader.mayRead(project: "p") && !reader.mayWrite(project: "p"))
        #expect(admin.mayWrite(project: "p") && admin.isAdmin && !member.isAdmin)
    }

    @Test func noauthTokensAreUserAndProject() async throws {
        let auth = NoAuthAuthenticator()
        let admin = try await auth.authenticate(token: "admin:p1")
        #expect(admin.isAdmin && admin.projectID == "p1")
        let alice = try await auth.authenticate(token: "alice:p2")
        #expect(!alice.isAdmin && alice.mayWrite(project: "p2") && alice.userID == "alice")
        await #expect(throws: BlazarError.unauthorized) { try await auth.authenticate(token: nil) }
        await #expect(throws: BlazarError.unauthorized) { try await auth.authenticate(token: ":p") }
    }
}
