import AllegroTestSupport
import Foundation
import Testing

/// `allegro protocol decode` on the real binary, against every vector decodable with its limits.
@Suite struct DecodeCommandTests {
    static let vectorDirectory = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("protocol/vectors")

    static var names: [String] {
        let data = (try? Data(contentsOf: vectorDirectory.appendingPathComponent("index.json"))) ?? Data()
        return (try? JSONSerialization.jsonObject(with: data)) as? [String] ?? []
    }

    @Test func vectorsListed() { #expect(Self.names.count >= 40) }

    @Test(arguments: names)
    func decodeMatchesVector(name: String) throws {
        let description = try JSONSerialization.jsonObject(
            with: Data(contentsOf: Self.vectorDirectory.appendingPathComponent(name + ".json"))) as? [String: Any] ?? [:]
        // The command reads captured streams with the protocol's widest limits; vectors that set
        // tighter limits are covered by the codec tests.
        guard description["limits"] == nil else { return }
        let file = Self.vectorDirectory.appendingPathComponent(name + ".bin")
        for arguments in [["protocol", "decode", file.path], ["protocol", "decode", "-"]] {
            let result = try AllegroBinary.run(arguments, stdin: arguments.last == "-" ? file : nil)
            let lines = result.stdout.split(separator: "\n").map { line in
                NSDictionary(dictionary: (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any] ?? [:])
            }
            let expected = (description["frames"] as? [[String: Any]] ?? []).map { NSDictionary(dictionary: $0) }
            #expect(lines == expected, "\(name): stdout")
            if let error = description["error"] as? [String: Any] {
                #expect(result.status == 1, "\(name): exit status")
                let kind = error["kind"] as? String ?? "?", offset = error["offset"] as? Int ?? -1
                let code = (error["code"] as? String).map { ", " + $0 } ?? ""
                #expect(result.stderr.contains("[\(kind)\(code)]"), "\(name): \(result.stderr)")
                #expect(result.stderr.contains("byte offset \(offset):"), "\(name): \(result.stderr)")
            } else {
                #expect(result.status == 0, "\(name): exit status, stderr \(result.stderr)")
                #expect(result.stderr.isEmpty)
            }
        }
    }

    @Test func aMissingFileIsAClearErrorThatSaysHowToRecordOne() throws {
        let result = try AllegroBinary.run(["protocol", "decode", "/nonexistent/stream.bin"])
        #expect(result.status != 0)
        #expect(result.stderr.contains("/nonexistent/stream.bin does not exist"), "\(result.stderr)")
        #expect(result.stderr.contains("protocol/vectors/") && result.stderr.contains("socat"), "\(result.stderr)")
        let help = try AllegroBinary.run(["protocol", "decode", "--help"])
        #expect(help.stdout.contains("socat -r capture.bin"), "\(help.stdout)")
    }

    @Test func versionAndHelp() throws {
        let version = try AllegroBinary.run(["version"])
        #expect(version.status == 0)
        #expect(version.stdout.hasPrefix("allegro "))
        let help = try AllegroBinary.run(["--help"])
        #expect(help.status == 0)
        for command in ["relay", "version", "protocol"] { #expect(help.stdout.contains(command)) }
    }
}
