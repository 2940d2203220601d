import AllegroPosix
import AllegroWire
import Foundation
import Glibc
import Histogram

/// Producer ACK latency (issue 22, "acks at the disk's speed"): records paced at a rate, each
/// timed from its scheduled send time to the ACK that covers it (ACKs are cumulative), beside the
/// disk's own floor at the same rate: a plain loop of 4 KiB append + fdatasync in the same
/// scratch directory. Each floor also runs writing over zeros written ahead of it (`zerosAhead`),
/// as the relay does by default (`spill_preallocate_bytes`), so each ratio has a floor that
/// writes the way it does.
extension Scenarios {
    static func acks(_ peer: AllegroPeer, rate: Int, seconds: Double, size: Int, scratch: URL) throws -> Measurement {
        try peer.start(scratch: scratch)
        defer { peer.stop() }
        let producer = try AckingProducer(peer.address)
        let expected = Int(Double(rate) * seconds)
        let scheduled = Schedule(count: expected)
        let first = producer.sequence
        let histogram = Shared(Histogram<UInt64>(highestTrackableValue: 120_000_000_000, numberOfSignificantValueDigits: .three))
        let acked = Shared(0)
        let start = Clock.wallNanos + 200_000_000
        let interval = 1_000_000_000.0 / Double(rate)
        let end = start + UInt64(seconds * 1e9)
        let sent = Shared(0)
        let stealBefore = Steal.totalMillis(), cpuBefore = peer.serverCPUSeconds ?? 0
        let reading = spawn { [producer, scheduled] in
            var local = Histogram<UInt64>(highestTrackableValue: 120_000_000_000, numberOfSignificantValueDigits: .three)
            var through = first - 1
            while through < first - 1 + UInt64(expected) && Clock.wallNanos < end + 10_000_000_000 {
                let next: UInt64?
                do { next = try producer.nextAck(timeoutMillis: 50) } catch { break }
                guard let ack = next else { continue }
                let now = Clock.wallNanos
                // Only records already sent have a time (the sender writes it before sending).
                let covered = min(ack, first - 1 + UInt64(sent.with { $0 }))
                while through < covered {
                    through += 1
                    let at = scheduled.times[Int(through - first)]
                    _ = local.record(now > at ? now - at : 0)
                }
            }
            histogram.with { $0 = local }
            acked.with { $0 = Int(through + 1 - first) }
        }
        var index = 0
        while index < expected {
            let at = start + UInt64(Double(index) * interval)
            if at >= end { break }
            waitUntil(at)
            scheduled.times[index] = at
            sent.with { $0 = index + 1 }
            try producer.send(eventTime: at, payloadSize: size)
            index += 1
        }
        reading.wait()
        let stolen = Steal.totalMillis() - stealBefore, cpu = (peer.serverCPUSeconds ?? 0) - cpuBefore
        let lags = histogram.with { $0 }
        func micros(_ percentile: Double) -> Double { Double(lags.valueAtPercentile(percentile)) / 1000 }
        return Measurement(
            scenario: "acks", peer: peer.name,
            parameters: ["rate": Double(rate), "seconds": seconds, "size": Double(size)],
            results: ["p50_us": micros(50), "p99_us": micros(99), "max_us": Double(lags.max) / 1000,
                      "acked": Double(acked.with { $0 }), "expected": Double(index),
                      "cpu_us_per_record": index > 0 ? cpu * 1e6 / Double(index) : 0, "steal_ms": stolen])
    }

    /// The disk's floor at a rate: appends of 4 KiB, each followed by fdatasync, started at
    /// `rate` per second (back to back when one is late, so at high rates it is a closed loop),
    /// timed one by one (write + fdatasync). Paced because an idle virtual disk is slower: here a
    /// lone fdatasync every 10 ms takes about 3x one in a tight loop.
    static func fsyncFloor(rate: Int, seconds: Double, scratch: URL, zerosAhead: Bool = false) throws -> Measurement {
        return try withAppendFile(in: scratch, named: "fsync-floor", zerosAhead: zerosAhead) { file in
            let block = [UInt8](repeating: 0x61, count: 4096)
            var histogram = Histogram<UInt64>(highestTrackableValue: 120_000_000_000, numberOfSignificantValueDigits: .three)
            let start = Clock.wallNanos + 50_000_000, end = start + UInt64(seconds * 1e9)
            let interval = 1_000_000_000.0 / Double(max(rate, 1))
            var count = 0
            let stealBefore = Steal.totalMillis(), cpuBefore = threadCPUSeconds()
            while true {
                let at = start + UInt64(Double(count) * interval)
                if at >= end { break }
                waitUntil(at)
                let started = Clock.monotonicNanos
                try block.withUnsafeBytes { try file.append($0) }
                try file.sync()
                _ = histogram.record(Clock.monotonicNanos - started)
                count += 1
            }
            func micros(_ percentile: Double) -> Double { Double(histogram.valueAtPercentile(percentile)) / 1000 }
            return Measurement(scenario: "acks", peer: "write+fdatasync" + (zerosAhead ? "/zeros-ahead" : ""), parameters: ["rate": Double(rate), "seconds": seconds, "size": 4096],
                               results: ["p50_us": micros(50), "p99_us": micros(99), "max_us": Double(histogram.max) / 1000,
                                         "acked": Double(count), "expected": Double(count),
                                         "cpu_us_per_record": count > 0 ? (threadCPUSeconds() - cpuBefore) * 1e6 / Double(count) : 0,
                                         "steal_ms": Steal.totalMillis() - stealBefore])
        }
    }
}

extension Scenarios {
    /// The disk's group-commit floor at a rate: what an ideal relay with no CPU, no network and
    /// no compression could do with this disk. Records "arrive" on the same schedule as the
    /// producer's; one loop appends everything that has arrived (`recordBytes` each, about a
    /// compressed record's size), fdatasyncs, and times each record from its scheduled arrival
    /// to the end of that fdatasync. Records that arrive during an fdatasync wait for it and go
    /// in the next one, as in the relay. Unlike the one-operation floor, its p99 is per record
    /// and time-weighted: a stalled fdatasync delays every record that arrives meanwhile.
    static func groupCommitFloor(rate: Int, seconds: Double, scratch: URL, recordBytes: Int = 64, zerosAhead: Bool = false) throws -> Measurement {
        return try withAppendFile(in: scratch, named: "group-commit-floor", zerosAhead: zerosAhead) { file in
            // One burst's bytes at most: 1 s of arrivals at 10k/s; a longer stall writes in pieces.
            let burstLimit = 10_000
            let block = [UInt8](repeating: 0x61, count: burstLimit * recordBytes)
            var histogram = Histogram<UInt64>(highestTrackableValue: 120_000_000_000, numberOfSignificantValueDigits: .three)
            let start = Clock.wallNanos + 50_000_000
            let interval = 1_000_000_000.0 / Double(max(rate, 1))
            let total = Int(Double(rate) * seconds)
            var committed = 0, syncs = 0
            let stealBefore = Steal.totalMillis(), cpuBefore = threadCPUSeconds()
            func arrival(_ index: Int) -> UInt64 { start + UInt64(Double(index) * interval) }
            while committed < total {
                waitUntil(arrival(committed))
                let now = Clock.wallNanos
                let arrived = min(total, Int(Double(now - start) / interval) + 1)
                let count = min(max(arrived - committed, 1), burstLimit)
                try block.withUnsafeBytes { try file.append(UnsafeRawBufferPointer(rebasing: $0[..<(count * recordBytes)])) }
                try file.sync()
                let done = Clock.wallNanos
                for index in committed ..< committed + count {
                    let at = arrival(index)
                    _ = histogram.record(done > at ? done - at : 0)
                }
                committed += count
                syncs += 1
            }
            func micros(_ percentile: Double) -> Double { Double(histogram.valueAtPercentile(percentile)) / 1000 }
            return Measurement(scenario: "acks", peer: "group-commit" + (zerosAhead ? "/zeros-ahead" : ""), parameters: ["rate": Double(rate), "seconds": seconds, "size": Double(recordBytes)],
                               results: ["p50_us": micros(50), "p99_us": micros(99), "max_us": Double(histogram.max) / 1000,
                                         "acked": Double(committed), "expected": Double(total), "fdatasyncs": Double(syncs),
                                         "cpu_us_per_record": total > 0 ? (threadCPUSeconds() - cpuBefore) * 1e6 / Double(total) : 0,
                                         "steal_ms": Steal.totalMillis() - stealBefore])
        }
    }
}

/// Runs `body` with a new file in `scratch` to append to, then closes and removes it.
func withAppendFile<T>(in scratch: URL, named name: String, zerosAhead: Bool = false, _ body: (FloorFile) throws -> T) throws -> T {
    let file = try FloorFile(path: scratch.appendingPathComponent("\(name)-\(UUID().uuidString)").path, zerosAhead: zerosAhead)
    defer { file.close() }
    return try body(file)
}

/// A floor's file: plain appends, or (`zerosAhead`) writes over zeros kept up to 1 MiB ahead of
/// them, 64 KiB at a time and at most once per append, as the relay's spill writer does, so most
/// fdatasyncs change no file size.
final class FloorFile {
    let path: String
    private let fd: Int32
    private let zeros: [UInt8]
    private var offset = 0, extent = 0
    static let aheadBytes = 1 << 20

    init(path: String, zerosAhead: Bool) throws {
        self.path = path
        fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw SystemError("open \(path)", errno: errno) }
        zeros = zerosAhead ? [UInt8](repeating: 0, count: 64 << 10) : []
    }

    func append(_ bytes: UnsafeRawBufferPointer) throws {
        let end = offset + bytes.count
        if !zeros.isEmpty && extent < end + Self.aheadBytes - zeros.count {
            let at = max(extent, end)
            let written = zeros.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, off_t(at)) }
            guard written == zeros.count else { throw SystemError("pwrite \(path)", errno: errno) }
            extent = at + zeros.count
        }
        let written = pwrite(fd, bytes.baseAddress, bytes.count, off_t(offset))
        guard written == bytes.count else { throw SystemError("pwrite \(path)", errno: errno) }
        offset = end
        extent = max(extent, offset)
    }

    func sync() throws {
        guard fdatasync(fd) == 0 else { throw SystemError("fdatasync \(path)", errno: errno) }
    }

    func close() {
        Glibc.close(fd)
        unlink(path)
    }
}

/// Each record's scheduled send time, written by the sender before it publishes the count
/// (`sent`, under its lock) and read by the ACK reader only below that count: the lock orders them.
final class Schedule: @unchecked Sendable {
    let times: UnsafeMutableBufferPointer<UInt64>
    init(count: Int) {
        times = .allocate(capacity: max(count, 1))
        times.initialize(repeating: 0)
    }
    deinit { times.deallocate() }
}

/// A producer that sends one record at a time and reads its ACKs on another thread (the send
/// and the receive are separate calls on one socket; each side is used by one thread only).
final class AckingProducer: @unchecked Sendable {
    let link: Link
    let outbound = OutboundBuffer(initialCapacity: 1 << 16)
    let inbound = InboundBuffer(limits: .permissive)
    private(set) var sequence: UInt64
    var payloads = PayloadCycle()

    init(_ address: String) throws {
        link = try Link(address)
        sequence = Clock.wallNanos / 1000
        outbound.append(.hello(role: .producer, clientID: "bench-acks-\(UUID().uuidString.prefix(8))", token: ""))
        try link.send(outbound.readable)
        outbound.consume(outbound.count)
        var welcomed = false
        while !welcomed {
            let space = inbound.writableSpace(minimum: 4096)
            inbound.didWrite(try link.receive(into: space, timeoutMillis: 5000))
            while let frame = try inbound.next() { if case .welcome = frame { welcomed = true } }
        }
    }

    func send(eventTime: UInt64, payloadSize: Int) throws {
        let empty = UnsafeRawBufferPointer(start: nil, count: 0)
        let mark = outbound.beginBatch(.publish)
        try payloads.next(size: payloadSize) { body in
            try outbound.appendPublishRecord(RecordHeader(producerSequence: sequence, eventTimeNanos: eventTime),
                                             session: empty, kind: empty, contentType: empty, payload: body)
        }
        outbound.endBatch(mark, count: 1)
        sequence += 1
        try link.send(outbound.readable)
        outbound.consume(outbound.count)
    }

    /// The next ACK's `through`, or nil when none came within the timeout.
    func nextAck(timeoutMillis: Int32) throws -> UInt64? {
        while true {
            while let frame = try inbound.next() { if case let .ack(through) = frame { return through } }
            let space = inbound.writableSpace(minimum: 4096)
            let count = try link.receive(into: space, timeoutMillis: timeoutMillis)
            guard count > 0 else { return nil }
            inbound.didWrite(count)
        }
    }
}

/// CPU time of the calling thread (user and system): a floor runs on one harness thread.
private func threadCPUSeconds() -> Double {
    var spec = timespec()
    guard clock_gettime(CLOCK_THREAD_CPUTIME_ID, &spec) == 0 else { return 0 }
    return Double(spec.tv_sec) + Double(spec.tv_nsec) / 1e9
}
