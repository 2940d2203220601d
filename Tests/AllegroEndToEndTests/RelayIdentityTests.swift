import AllegroTestSupport
import Foundation
import Testing

/// Each data directory is a relay of its own: the identity WELCOME carries is made at the first
/// start, kept across restarts, different for every data directory, replaced by a configured
/// `relay_id`, and never a reason not to start.
@Suite struct RelayIdentityTests {
    /// The relay_id a relay's WELCOME carries.
    private func welcomeIdentity(_ relay: RelayProcess) throws -> String {
        let client = try RawClient(relay.address)
        let json = try #require(try client.hello(.collector).first?.json)
        let marker = #""relay_id":""#
        let start = try #require(json.range(of: marker)).upperBound
        return String(json[start...].prefix { $0 != "\"" })
    }

    @Test func twoDataDirectoriesAreTwoRelaysAndARestartKeepsItsIdentity() throws {
        let data = try AllegroBinary.scratchDirectory()
        defer { try? FileManager.default.removeItem(at: data) }
        let first = try RelayProcess(["--http", "off"], dataDirectory: data)
        let identity = try welcomeIdentity(first)
        #expect(identity.hasPrefix("relay-") && identity.count == 22, "\(identity)")
        let kept = try String(contentsOf: data.appendingPathComponent("relay_id"), encoding: .utf8)
        #expect(kept == identity + "\n")
        let other = try RelayProcess(["--http", "off"])
        #expect(try welcomeIdentity(other) != identity, "another data directory, another relay")
        first.stop()
        let again = try RelayProcess(["--http", "off"], dataDirectory: data)
        #expect(try welcomeIdentity(again) == identity, "a restart is the same relay")
    }

    @Test func aConfiguredRelayIdIsSentAsIs() throws {
        let relay = try RelayProcess(["--http", "off", "--set", "relay_id=vps-2"])
        #expect(try welcomeIdentity(relay) == "vps-2")
        let refused = try AllegroBinary.run(["config", "check", "--set", "relay_id=two words"], timeout: 20)
        #expect(refused.status == 2)
        #expect(refused.stderr.contains("relay_id"), "\(refused.stderr)")
    }

    @Test func aDamagedIdentityFileIsSetAsideAndANewIdentityMade() throws {
        let data = try AllegroBinary.scratchDirectory()
        defer { try? FileManager.default.removeItem(at: data) }
        try Data([0xFF, 0x0A, 0x41, 0x0A]).write(to: data.appendingPathComponent("relay_id"))
        let relay = try RelayProcess(["--http", "off"], dataDirectory: data)
        let identity = try welcomeIdentity(relay)
        #expect(identity.hasPrefix("relay-"), "\(identity)")
        #expect(relay.log.contains("event=relay_id_set_aside"), "\(relay.log)")
        let names = try FileManager.default.contentsOfDirectory(atPath: data.path)
        #expect(names.contains { $0.hasPrefix("relay_id.bad-") }, "\(names)")
    }
}
