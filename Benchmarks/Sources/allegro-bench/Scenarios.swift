import AllegroClient
import AllegroPosix
import AllegroWire
import Foundation
import Glibc
import Histogram

/// One measured line of the report.
struct Measurement: Codable {
    var scenario: String
    var peer: String
    var parameters: [String: Double]
    var results: [String: Double]
}

/// Shared mutable state between a scenario's threads, behind a lock.
final class Shared<Value>: @unchecked Sendable {
    // @unchecked: every access goes through `lock`.
    private let lock = NSLock()
    private var value: Value
    init(_ value: Value) { self.value = value }
    func with<T>(_ body: (inout Value) -> T) -> T { lock.lock(); defer { lock.unlock() }; return body(&value) }
}

func spawn(_ body: @escaping @Sendable () -> Void) -> DispatchSemaphore {
    let done = DispatchSemaphore(value: 0)
    Thread { body(); done.signal() }.start()
    return done
}

/// Waits until the wall clock reaches `nanos`: sleeps on an absolute timer until `spinNanos`
/// before it (the kernel's timer slack for an ordinary thread is 50 µs), then spins. An earlier
/// version slept only when more than 200 µs away, so at 10k/s (100 µs apart) the sender spun a
/// whole core and competed with the relay on two cores (BENCHMARKS.md, "Acks at the disk's speed").
func waitUntil(_ nanos: UInt64) {
    let spinNanos: UInt64 = 60_000
    let now = Clock.wallNanos
    if nanos > now + spinNanos {
        let wake = nanos - spinNanos
        var deadline = timespec(tv_sec: Int(wake / 1_000_000_000), tv_nsec: Int(wake % 1_000_000_000))
        while clock_nanosleep(CLOCK_REALTIME, TIMER_ABSTIME, &deadline, nil) == EINTR {}
    }
    while Clock.wallNanos < nanos {}
}

enum Scenarios {
    /// P producers at a total of `rate` records/s for `seconds`, record i sent on producer
    /// i % P by one sender thread (a thread per producer would be 1,000 threads at the scale
    /// scenario's top); C collectors, each given every record; lag from the scheduled send time
    /// to each collector's receipt, in one HdrHistogram (C samples per record).
    static func paced(_ peer: Peer, rate: Int, seconds: Double, size: Int, producers: Int, collectors: Int = 1,
                      scratch: URL) throws -> Measurement {
        try peer.start(scratch: scratch)
        defer { peer.stop() }
        _ = PayloadPool.shared(size: size)  // made before the clock starts, not on the first send
        let readers = try (0 ..< max(collectors, 1)).map { _ in try peer.collector() }
        let links = try (0 ..< max(producers, 1)).map { _ in try peer.producer() }
        let expected = Int(Double(rate) * seconds)
        let histogram = Shared(Histogram<UInt64>(highestTrackableValue: 120_000_000_000, numberOfSignificantValueDigits: .three))
        // The fewest records any collector got: each must get them all.
        let received = Shared(Int.max)
        let cpuBefore = peer.serverCPUSeconds ?? 0
        let stealBefore = Steal.totalMillis()
        let start = Clock.wallNanos + 200_000_000
        let interval = 1_000_000_000.0 / Double(rate)
        let end = start + UInt64(seconds * 1e9)
        let collecting = readers.map { collector in
            spawn { [collector] in
                var local = Histogram<UInt64>(highestTrackableValue: 120_000_000_000, numberOfSignificantValueDigits: .three)
                var count = 0
                while count < expected && Clock.wallNanos < end + 5_000_000_000 {
                    try? collector.poll(timeoutMillis: 20) { eventTime in
                        let now = Clock.wallNanos
                        _ = local.record(now > eventTime ? now - eventTime : 0)
                        count += 1
                    }
                }
                histogram.with { $0.add(local) }
                received.with { $0 = min($0, count) }
            }
        }
        let sending = spawn { [links] in
            var i = 0
            var time: UInt64 = 0
            while true {
                let scheduled = start + UInt64(Double(i) * interval)
                if scheduled >= end { break }
                waitUntil(scheduled)
                time = scheduled
                let link = links[i % links.count]
                try? withUnsafePointer(to: &time) { try link.send(UnsafeBufferPointer(start: $0, count: 1), payloadSize: size) }
                i += 1
            }
        }
        sending.wait()
        for reader in collecting { reader.wait() }
        // Producer connections stay open until everything arrived: closing one drops what the
        // server has not read yet (unacknowledged, so a real producer would resend it).
        withExtendedLifetime(links) {}
        let cpu = (peer.serverCPUSeconds ?? 0) - cpuBefore
        let stolen = Steal.totalMillis() - stealBefore
        let lags = histogram.with { $0 }
        let count = received.with { $0 }
        func micros(_ percentile: Double) -> Double { Double(lags.valueAtPercentile(percentile)) / 1000 }
        return Measurement(
            scenario: "paced", peer: peer.name,
            parameters: ["rate": Double(rate), "seconds": seconds, "size": Double(size), "producers": Double(producers),
                         "collectors": Double(collectors)],
            results: ["p50_us": micros(50), "p90_us": micros(90), "p99_us": micros(99), "p999_us": micros(99.9),
                      "max_us": Double(lags.max) / 1000, "received": Double(count), "expected": Double(expected),
                      "server_cpu_us_per_record": count > 0 ? cpu * 1e6 / Double(count) : 0, "steal_ms": stolen])
    }

    /// Producers send batches as fast as they can for `seconds`; records/s and MB/s received.
    static func throughput(_ peer: Peer, seconds: Double, size: Int, producers: Int, batch: Int, scratch: URL) throws -> Measurement {
        try peer.start(scratch: scratch)
        defer { peer.stop() }
        let collector = try peer.collector()
        let links = try (0 ..< producers).map { _ in try peer.producer() }
        let sent = Shared(0)
        let stop = Clock.wallNanos + UInt64(seconds * 1e9)
        let cpuBefore = peer.serverCPUSeconds ?? 0
        let tally = Shared((count: 0, first: UInt64(0), last: UInt64(0)))
        let producing = Shared(producers)
        let collecting = spawn { [collector] in
            var count = 0, first: UInt64 = 0, last: UInt64 = 0
            var quietSince = Clock.wallNanos
            while true {
                var got = 0
                do { try collector.poll(timeoutMillis: 20) { _ in got += 1 } } catch {
                    FileHandle.standardError.write(Data("collector: \(error)\n".utf8))
                    break
                }
                let now = Clock.wallNanos
                if got > 0 {
                    if count == 0 { first = now }
                    count += got
                    last = now
                    quietSince = now
                }
                let done = producing.with { $0 == 0 }
                if done && (count >= sent.with({ $0 }) || now - quietSince > 2_000_000_000) { break }
            }
            tally.with { $0 = (count, first, last) }
        }
        let senders = links.map { link in
            spawn { [link] in
                var times = [UInt64](repeating: 0, count: batch)
                var mine = 0
                while Clock.wallNanos < stop {
                    let now = Clock.wallNanos
                    for index in 0 ..< batch { times[index] = now }
                    guard (try? times.withUnsafeBufferPointer { try link.send($0, payloadSize: size) }) != nil else { break }
                    mine += batch
                }
                sent.with { $0 += mine }
                producing.with { $0 -= 1 }
            }
        }
        for sender in senders { sender.wait() }
        collecting.wait()
        withExtendedLifetime(links) {}
        let cpu = (peer.serverCPUSeconds ?? 0) - cpuBefore
        let (count, first, last) = tally.with { $0 }
        let elapsed = max(Double(last &- first) / 1e9, 1e-9)
        return Measurement(
            scenario: "throughput", peer: peer.name,
            parameters: ["seconds": seconds, "size": Double(size), "producers": Double(producers), "batch": Double(batch)],
            results: ["records_per_s": Double(count) / elapsed, "mb_per_s": Double(count * size) / elapsed / 1e6,
                      "received": Double(count), "sent": Double(sent.with { $0 }),
                      "server_cpu_us_per_record": count > 0 ? cpu * 1e6 / Double(count) : 0])
    }

    /// The durable collector is away while `records` arrive; then it returns from its committed
    /// cursor: catch-up time, replay rate, and a check that every record arrived once, in order.
    static func outage(binary: String, records: Int, size: Int, scratch: URL, extra: [String] = [], name: String = "allegro") throws -> Measurement {
        let relay = AllegroPeer(binary: binary, extra: ["--durable", "timmy"] + extra)
        try relay.start(scratch: scratch)
        defer { relay.stop() }
        var options = ProducerOptions(relays: [try SocketAddress(parsing: relay.address)], producerID: "outage-bench")
        options.batchRecords = 1024
        let producer = try Producer(options)
        var payloads = PayloadCycle()
        let loadStart = Clock.monotonicNanos
        for _ in 0 ..< records { try payloads.next(size: size) { _ = try producer.publish(payload: $0) } }
        // Every record acknowledged: in the spill and fsync'd.
        try producer.close(timeoutMillis: 300_000)
        let loadSeconds = Double(Clock.monotonicNanos - loadStart) / 1e9
        let link = try Link(relay.address)
        let outbound = OutboundBuffer()
        outbound.append(.hello(role: .collector, clientID: "timmy", token: ""))
        outbound.append(.subscribe(start: .committed, credit: UInt32.max, name: "timmy"))
        try link.send(outbound.readable)
        let inbound = InboundBuffer(limits: .permissive, initialCapacity: 1 << 20)
        var expected: UInt64 = 1, received = 0, disorder = 0
        let catchUpStart = Clock.monotonicNanos
        let deadline = catchUpStart + 300_000_000_000
        while received < records && Clock.monotonicNanos < deadline {
            let space = inbound.writableSpace(minimum: 256 * 1024)
            inbound.didWrite(try link.receive(into: space, timeoutMillis: 100))
            while let frame = try inbound.next() {
                guard case let .deliver(batch) = frame else { continue }
                for record in batch {
                    if record.relaySequence != expected { disorder += 1 }
                    expected = record.relaySequence + 1
                    received += 1
                }
            }
        }
        let catchUp = Double(Clock.monotonicNanos - catchUpStart) / 1e9
        return Measurement(
            scenario: "outage", peer: name, parameters: ["records": Double(records), "size": Double(size)],
            results: ["ingest_acked_records_per_s": Double(records) / loadSeconds, "catch_up_seconds": catchUp, "replay_records_per_s": Double(received) / catchUp,
                      "received": Double(received), "out_of_order_or_gaps": Double(disorder)])
    }

    /// `kill -9` of the relay while a producer publishes; restart on the same data; the producer
    /// resends; a collector then checks that every acked record is there exactly once.
    static func crash(binary: String, records: Int, size: Int, scratch: URL) throws -> Measurement {
        let relay = AllegroPeer(binary: binary)
        let data = scratch.appendingPathComponent("crash-data")
        let port = try freePort()
        try relay.start(data: data, port: port, log: scratch.appendingPathComponent("crash-1.log"))
        var options = ProducerOptions(relays: [try SocketAddress(parsing: relay.address)], producerID: "crash-bench")
        options.reconnectForMillis = 60_000
        let producer = try Producer(options)
        var payloads = PayloadCycle()
        var restartSeconds = 0.0
        for index in 0 ..< records {
            try payloads.next(size: size) { _ = try producer.publish(payload: $0) }
            if index == records / 2 {
                relay.crash()
                let restarting = Clock.monotonicNanos
                try relay.start(data: data, port: port, log: scratch.appendingPathComponent("crash-2.log"))
                restartSeconds = Double(Clock.monotonicNanos - restarting) / 1e9
            }
        }
        try producer.flush(timeoutMillis: 120_000)
        defer { relay.stop() }
        var collectorOptions = CollectorOptions(relays: [try SocketAddress(parsing: relay.address)])
        collectorOptions.start = .earliest
        let collector = try Collector(collectorOptions)
        var seen = Set<UInt64>(), duplicates = 0, skips = 0, previous: UInt64 = 0, disorder = 0
        while seen.count < records, let event = try collector.next(timeoutMillis: 5000) {
            switch event {
            case let .record(record):
                if !seen.insert(record.producerSequence).inserted { duplicates += 1 }
                if record.relaySequence <= previous { disorder += 1 }
                previous = record.relaySequence
            case .skip: skips += 1
            }
        }
        let firstSequence = producer.nextSequence - UInt64(records)
        let missing = (firstSequence ..< producer.nextSequence).filter { !seen.contains($0) }.count
        return Measurement(
            scenario: "crash", peer: "allegro", parameters: ["records": Double(records), "size": Double(size)],
            results: ["acked": Double(producer.ackedThrough + 1 - firstSequence), "missing": Double(missing),
                      "duplicates": Double(duplicates), "skip_markers": Double(skips), "sequence_disorder": Double(disorder),
                      "restart_seconds": restartSeconds, "producer_reconnects": Double(producer.reconnects)])
    }
}
