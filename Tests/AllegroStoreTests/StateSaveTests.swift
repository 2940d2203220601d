import AllegroSpill
import AllegroStore
import Foundation
import Testing

/// The spill thread's state save on a real SQLite file: producer marks and session counts,
/// whose values are bound straight through SQLite's C API (`BoundStatement`).
struct StateSaveTests {
    private func withStore(_ body: (StateStore) throws -> Void) throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("allegro-store-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        try body(try StateStore(path: directory.appendingPathComponent("state.sqlite").path))
    }

    private func delta(_ session: String, _ kind: String, _ producer: String, records: UInt64, first: UInt64, last: UInt64,
                       errors: UInt64 = 0) -> SessionDelta {
        var delta = SessionDelta(session: session, kind: kind, producer: producer)
        delta.records = records
        delta.bytes = records * 100
        delta.errors = errors
        delta.firstNanos = first
        delta.lastNanos = last
        return delta
    }

    @Test func marksKeepTheHighestProducerSequenceWithItsRelaySequenceWhateverTheBytesOfTheId() throws {
        try withStore { store in
            let binary: [UInt8] = [0, 0xFF, 0x41, 0]
            try store.save(marks: [ProducerMark(producer: Array("hermes-1".utf8), producerSequence: 10, relaySequence: 100),
                                   ProducerMark(producer: binary, producerSequence: 5, relaySequence: 50)],
                           checkpoint: 100, cursors: [:], sessions: [], atNanos: 1)
            try store.save(marks: [ProducerMark(producer: Array("hermes-1".utf8), producerSequence: 9, relaySequence: 200),
                                   ProducerMark(producer: binary, producerSequence: 6, relaySequence: 300)],
                           checkpoint: 300, cursors: [:], sessions: [], atNanos: 2)
            let marks = ProducerMarks(try store.load().marks)
            #expect(marks.count == 2)
            #expect(marks[Array("hermes-1".utf8)] == ProducerMark(producer: Array("hermes-1".utf8), producerSequence: 10, relaySequence: 100),
                    "a lower producer sequence does not move the mark")
            #expect(marks[binary] == ProducerMark(producer: binary, producerSequence: 6, relaySequence: 300),
                    "an id with zero bytes is stored whole, as a blob")
            #expect(try store.load().marksCheckpoint == 300)
        }
    }

    @Test func sessionCountsAddUpAcrossDeltasAndSavesByKindAndProducer() throws {
        try withStore { store in
            try store.save(marks: [], checkpoint: 1, cursors: [:], sessions: [
                delta("h-1", "tool.call", "p1", records: 3, first: 50, last: 70),
                delta("h-1", "tool_error", "p1", records: 1, first: 40, last: 60, errors: 1),
                delta("h-1", "tool.call", "p2", records: 2, first: 55, last: 90),
                delta("séance-ü", "", "p1", records: 4, first: 10, last: 20),
            ], atNanos: 1)
            try store.save(marks: [], checkpoint: 2, cursors: [:], sessions: [
                delta("h-1", "tool.call", "p1", records: 5, first: 100, last: 120),
            ], atNanos: 2)

            let detail = try #require(try store.session(id: "h-1"))
            #expect(detail.summary.records == 11 && detail.summary.bytes == 1_100 && detail.summary.errors == 1)
            #expect(detail.summary.firstSeenNanos == 40 && detail.summary.lastSeenNanos == 120)
            #expect(detail.kinds.map { [$0.kind, String($0.records), String($0.errors)] } == [["tool.call", "10", "0"], ["tool_error", "1", "1"]])
            #expect(detail.producers.map { [$0.producer, String($0.records)] } == [["p1", "9"], ["p2", "2"]])

            let other = try #require(try store.session(id: "séance-ü"), "a non-ASCII id is bound as its UTF-8")
            #expect(other.summary.records == 4 && other.kinds.map(\.kind) == [""], "an empty kind is a value, not NULL")
            #expect(try store.sessions(limit: 10).map(\.id) == ["h-1", "séance-ü"])
        }
    }
}
