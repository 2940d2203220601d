@testable import AllegroSupervisor
import Testing

/// The `services` list is read strictly: every mistake is refused with its key path.
@Suite struct ServiceSpecTests {
    @Test func commandsAndUnitsWithTheirProbesAreRead() throws {
        let specs = try ServiceSpecParser.parse([
            ["name": "relay", "command": ["allegro", "relay", "--set", "listen=127.0.0.1:7400"],
             "probe": ["http": "http://127.0.0.1:7401/health", "interval_ms": 1000, "failures": 2]] as [String: Any],
            ["name": "uni-wizard", "systemd": "uni-wizard.service", "probe": ["tcp": "[::1]:8080"]],
            ["name": "check", "command": ["/bin/true"], "environment": ["PORT": 8080], "stop_grace_ms": 500,
             "probe": ["command": ["test", "-e", "/tmp"], "timeout_ms": 300]],
        ])
        #expect(specs.map(\.name) == ["relay", "uni-wizard", "check"])
        #expect(specs[0].kind == .command(["allegro", "relay", "--set", "listen=127.0.0.1:7400"]))
        #expect(specs[0].probe?.kind == .http("http://127.0.0.1:7401/health") && specs[0].probe?.intervalMillis == 1000)
        #expect(specs[0].probe?.failures == 2 && specs[0].probe?.timeoutMillis == 2000, "unset keys keep their defaults")
        #expect(specs[1].kind == .systemd(unit: "uni-wizard.service") && specs[1].probe?.kind == .tcp(host: "::1", port: 8080))
        #expect(specs[2].environment == ["PORT": "8080"] && specs[2].stopGraceMillis == 500)
    }

    @Test func everyMistakeIsRefusedWithItsKeyPath() {
        let cases: [(Any, String)] = [
            ("relay", "services"),
            ([["command": ["x"]]], "services[0].name"),
            ([["name": "Relay!", "command": ["x"]]], "services[0].name"),
            ([["name": "a", "command": ["x"]], ["name": "a", "command": ["y"]]], "services[1].name"),
            ([["name": "a"]], "services[0]"),
            ([["name": "a", "command": ["x"], "systemd": "a.service"]], "services[0]"),
            ([["name": "a", "command": []]], "services[0].command"),
            ([["name": "a", "command": "allegro relay"]], "services[0].command"),
            ([["name": "a", "command": ["x", true]]], "services[0].command[1]"),
            ([["name": "a", "command": ["x"], "restart": "always"]], "services[0].restart"),
            ([["name": "a", "systemd": "-bad"]], "services[0].systemd"),
            ([["name": "a", "systemd": "a.service", "environment": ["X": "1"]]], "services[0].environment"),
            ([["name": "a", "command": ["x"], "directory": "relative"]], "services[0].directory"),
            ([["name": "a", "command": ["x"], "probe": ["http": "ftp://x"]]], "services[0].probe.http"),
            ([["name": "a", "command": ["x"], "probe": ["tcp": "no-port"]]], "services[0].probe.tcp"),
            ([["name": "a", "command": ["x"], "probe": [:] as [String: Any]]], "services[0].probe"),
            ([["name": "a", "command": ["x"], "probe": ["tcp": "h:1", "interval_ms": 5]]], "services[0].probe.interval_ms"),
            ([["name": "a", "command": ["x"], "probe": ["tcp": "h:1", "failures": "3"]]], "services[0].probe.failures"),
            ([["name": "a", "command": ["x"], "stop_grace_ms": true]], "services[0].stop_grace_ms"),
        ]
        for (value, key) in cases {
            #expect(throws: ServiceSpecError.self, "\(key)") { try ServiceSpecParser.parse(value) }
            do { _ = try ServiceSpecParser.parse(value) } catch { #expect(error.key == key, "\(value)") }
        }
        let many = (0 ... ServiceSpecParser.maxServices).map { ["name": "s\($0)", "command": ["x"]] as [String: Any] }
        #expect(throws: ServiceSpecError.self) { try ServiceSpecParser.parse(many) }
    }

    @Test func systemctlShowIsReadAndUnknownPropertiesAreIgnored() {
        let state = UnitState(show: "ActiveState=failed\nSubState=failed\nResult=exit-code\nNRestarts=5\nExecMainStatus=3\nNewProperty=x\n")
        #expect(state.activeState == "failed" && state.subState == "failed" && state.result == "exit-code")
        #expect(state.restarts == 5 && state.execMainStatus == 3 && state.isDown && !state.isUp)
        #expect(UnitState(show: "ActiveState=active\nSubState=running").isUp)
        #expect(!UnitState(show: "ActiveState=activating").isDown)
        #expect(UnitState(show: "garbage").activeState == "")
    }
}
