import BerthJSON
import BerthTestSupport
import Foundation
import NIOHTTP1
import Testing

@testable import BerthOpenStack

func write(_ text: String, to path: String) {
    try! text.write(toFile: path, atomically: true, encoding: .utf8)
}

@Suite struct CloudsYAMLTests {
    let yaml = """
        clouds:
          berth:
            auth:
              auth_url: https://keystone.example.org:5000
              username: berth-svc
              project_name: berth
              user_domain_name: Users
            region_name: RegionTwo
            interface: internal
          appcred:
            auth_type: v3applicationcredential
            auth:
              auth_url: http://127.0.0.1:5000/v3/
              application_credential_id: "abc123"
              application_credential_secret: s3cret
            verify: false
        """

    @Test func passwordCloudWithSecureOverlay() throws {
        let dir = temporaryDirectory(prefix: "berth-os")
        write(yaml, to: dir + "/clouds.yaml")
        write("clouds:\n  berth:\n    auth:\n      password: from-secure\n", to: dir + "/secure.yaml")
        let c = try CloudConfig.load(cloud: "berth", file: dir + "/clouds.yaml", environment: [:])
        #expect(c.authType == .password)
        #expect(c.authURL == "https://keystone.example.org:5000/v3")
        #expect(c.password == "from-secure")
        #expect(c.userDomainName == "Users")
        #expect(c.projectDomainName == "Default")
        #expect(c.regionName == "RegionTwo")
        #expect(c.interface == "internal")
        #expect(c.verify)
        let body = KeystoneSession.authBody(c)
        #expect(body["auth"]?["identity"]?["methods"] == ["password"])
        #expect(body["auth"]?["identity"]?["password"]?["user"]?["domain"]?["name"] == "Users")
        #expect(body["auth"]?["scope"]?["project"]?["name"] == "berth")
    }

    @Test func applicationCredentialCloudChosenByOSCloud() throws {
        let dir = temporaryDirectory(prefix: "berth-os")
        write(yaml, to: dir + "/clouds.yaml")
        let c = try CloudConfig.load(
            cloud: nil, file: nil, environment: ["OS_CLIENT_CONFIG_FILE": dir + "/clouds.yaml", "OS_CLOUD": "appcred"])
        #expect(c.authType == .applicationCredential)
        #expect(c.authURL == "http://127.0.0.1:5000/v3")
        #expect(!c.verify)
        let body = KeystoneSession.authBody(c)
        #expect(body["auth"]?["identity"]?["application_credential"]?["id"] == "abc123")
        #expect(body["auth"]?["scope"] == nil)  // the credential carries its own scope
    }

    @Test func errorsNameTheFileAndTheKey() {
        let dir = temporaryDirectory(prefix: "berth-os")
        write(yaml, to: dir + "/clouds.yaml")
        #expect(throws: OpenStackError.config("\(dir)/clouds.yaml: no cloud named 'prod' (have: appcred, berth)")) {
            try CloudConfig.load(cloud: "prod", file: dir + "/clouds.yaml", environment: [:])
        }
        #expect(throws: OpenStackError.self) {
            try CloudConfig.load(cloud: "berth", file: dir + "/clouds.yaml", environment: [:])  // no password anywhere
        }
        do {
            _ = try CloudConfig.load(cloud: "berth", file: dir + "/clouds.yaml", environment: [:])
        } catch {
            #expect(error.description.contains("clouds.berth.auth.password is missing"))
        }
        write("clouds: [oops", to: dir + "/bad.yaml")
        do {
            _ = try CloudConfig.load(cloud: nil, file: dir + "/bad.yaml", environment: [:])
            Issue.record("malformed YAML was accepted")
        } catch {
            #expect(error.description.contains("not valid YAML"))
        }
        do {
            _ = try CloudConfig.load(cloud: nil, file: nil, environment: ["HOME": dir + "/nowhere"])
        } catch {
            #expect(error.description.contains("no clouds.yaml found"))
        }
        write("clouds:\n  x:\n    auth_type: token\n    auth: {auth_url: http://k/v3}\n", to: dir + "/token.yaml")
        do {
            _ = try CloudConfig.load(cloud: nil, file: dir + "/token.yaml", environment: [:])
        } catch {
            #expect(error.description.contains("auth_type 'token' is not supported"))
        }
    }

    @Test func searchPathFollowsOpenstacksdk() {
        let path = CloudConfig.searchPath(environment: ["OS_CLIENT_CONFIG_FILE": "/x/c.yaml", "HOME": "/home/b"])
        #expect(path.first == "/x/c.yaml")
        #expect(path.contains("/home/b/.config/openstack/clouds.yaml"))
        #expect(path.last == "/etc/openstack/clouds.yaml")
    }

    @Test func catalogEndpointByTypeInterfaceAndRegion() {
        let catalog: [JSON] = [
            ["type": "identity", "endpoints": [["interface": "public", "region_id": "R1", "url": "http://k/v3"]]],
            [
                "type": "compute",
                "endpoints": [
                    ["interface": "public", "region_id": "R1", "url": "http://nova-r1/v2.1/"],
                    ["interface": "internal", "region_id": "R1", "url": "http://nova-r1-int/v2.1"],
                    ["interface": "public", "region_id": "R2", "url": "http://nova-r2/v2.1"],
                ],
            ],
        ]
        #expect(
            KeystoneSession.endpoint(type: "compute", interface: "public", region: "R2", catalog: catalog)
                == "http://nova-r2/v2.1")
        #expect(
            KeystoneSession.endpoint(type: "compute", interface: "internal", region: nil, catalog: catalog)
                == "http://nova-r1-int/v2.1")
        #expect(
            KeystoneSession.endpoint(type: "compute", interface: "public", region: "R1", catalog: catalog)
                == "http://nova-r1/v2.1")
        #expect(KeystoneSession.endpoint(type: "compute", interface: "admin", region: nil, catalog: catalog) == nil)
    }

    @Test func keystoneExpiryParses() {
        let d = KeystoneSession.parseDate("2030-01-01T10:00:00.000000Z")
        #expect(d == Date(timeIntervalSince1970: 1_893_492_000))
    }

    @Test func novaErrorsCarryMessageAndRetryAfter() {
        var headers = HTTPHeaders()
        headers.add(name: "Retry-After", value: "17")
        let r = HTTPResult(
            status: 503, headers: headers, body: ["serviceUnavailable": ["code": 503, "message": "try later"]], text: ""
        )
        let e = OpenStackHTTP.failure(r, method: .GET, url: "http://nova/v2.1/os-aggregates")
        #expect(e.retryAfterSeconds == 17)
        #expect(e.description.contains("HTTP 503: try later"))
        var dated = HTTPHeaders()
        dated.add(name: "Retry-After", value: "Fri, 01 Jan 2100 00:00:00 GMT")
        let far = OpenStackHTTP.failure(
            HTTPResult(status: 429, headers: dated, body: nil, text: "slow down"), method: .POST, url: "u")
        #expect((far.retryAfterSeconds ?? 0) > 86_400)
    }

    @Test func resourceClassNames() {
        var s = OpenStackSettings()
        #expect(s.resourceClass(for: "1g.5gb") == "CUSTOM_MIG_1G_5GB")
        #expect(s.resourceClass(for: "1g.10gb+me") == "CUSTOM_MIG_1G_10GB_ME")
        s.resourceClasses["3g.20gb"] = "CUSTOM_A100_3G"
        #expect(s.resourceClass(for: "3g.20gb") == "CUSTOM_A100_3G")
    }

    @Test func reservationsFromAnActionPayload() {
        let payload: [String: JSON] = [
            "reservations": [
                ["id": "r1", "kind": "host"], ["id": "r2", "kind": "instance", "vcpus": 4, "gpu_profile": "1g.5gb"],
            ],
            "allocations": [
                ["reservation_id": "r1", "kind": "host", "host": "h1"],
                ["reservation_id": "r1", "kind": "host", "host": "h2"],
                ["reservation_id": "r2", "kind": "instance", "host": "h3", "slots": 2],
                ["reservation_id": "r2", "kind": "instance", "host": "h3", "gpu": 0, "slot": 1],
            ],
        ]
        let plans = OpenStackAdapter.reservations(of: payload)
        #expect(plans.map(\.id) == ["r1", "r2"])
        #expect(plans[0].hosts == ["h1", "h2"])
        #expect(plans[1].hosts == ["h3"])
        #expect(plans[1].vcpus == 4 && plans[1].profile == "1g.5gb")
    }
}
