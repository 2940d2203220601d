import AllegroRing
import AllegroSpill
import AllegroWire
import Benchmark

/// Microbenchmarks of the hot paths, one batch of 256 records (128-byte payloads) per iteration:
/// codec encode and decode, ring append and read, spill block compress and decompress. Run with
/// `swift package benchmark` in this directory; the malloc columns must read 0 for the codec and
/// ring (no heap allocation per record).
let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.throughput, .wallClock, .mallocCountTotal],
        warmupIterations: 10, maxDuration: .seconds(2), maxIterations: 100_000)

    Benchmark("Wire: decode PUBLISH of 256 records") { benchmark, fixture in
        let inbound = InboundBuffer(limits: .standard, initialCapacity: 64 * 1024)
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            fixture.publish.withUnsafeBytes { frame in
                let space = inbound.writableSpace(minimum: frame.count)
                space.copyMemory(from: frame)
                inbound.didWrite(frame.count)
            }
            var total = 0
            if case let .publish(batch)? = try? inbound.next() {
                for record in batch { total &+= record.payload.count }
            }
            blackHole(total)
        }
    } setup: { Fixture() }

    Benchmark("Wire: encode DELIVER of 256 records") { benchmark, fixture in
        let outbound = OutboundBuffer(initialCapacity: 128 * 1024)
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            let mark = outbound.beginBatch(.deliver)
            for record in fixture.delivered { record.withUnsafeBytes { outbound.append(raw: $0) } }
            outbound.endBatch(mark, count: fixture.delivered.count)
            blackHole(outbound.count)
            outbound.consume(outbound.count)
        }
    } setup: { Fixture() }

    Benchmark("Ring: append and read 256 records") { benchmark, fixture in
        let ring = RecordRing(byteCapacity: 8 << 20, slotCapacity: 1 << 16)
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            let first = ring.head
            for record in fixture.delivered {
                record.withUnsafeBytes { bytes in
                    _ = ring.append(size: bytes.count) { space, _ in space.copyMemory(from: bytes) }
                }
            }
            var total = 0
            for sequence in first ..< ring.head { total &+= ring.record(sequence).count }
            blackHole(total)
        }
    } setup: { Fixture() }

    // Each spill codec at the relay's default level (deflate and zlib at 1), on the same block.
    for codec in SpillCodec.allCases {
        Benchmark("Spill: compress a 64 KiB block (\(codec.rawValue))", configuration: .init(metrics: [.throughput, .wallClock, .mallocCountTotal])) { benchmark, fixture in
            let compressor = BlockCompressor(codec: codec, level: 1)
            let output = UnsafeMutableRawBufferPointer.allocate(byteCount: compressor.bound(fixture.block.count), alignment: 16)
            defer { output.deallocate() }
            benchmark.startMeasurement()
            for _ in benchmark.scaledIterations {
                blackHole(fixture.block.withUnsafeBytes { compressor.compress($0, into: output) })
            }
        } setup: { Fixture() }

        Benchmark("Spill: decompress a 64 KiB block (\(codec.rawValue))", configuration: .init(metrics: [.throughput, .wallClock, .mallocCountTotal])) { benchmark, fixture in
            let decompressor = BlockDecompressor()
            let output = UnsafeMutableRawBufferPointer.allocate(byteCount: fixture.block.count, alignment: 16)
            defer { output.deallocate() }
            let compressed = fixture.compressed(codec)
            benchmark.startMeasurement()
            for _ in benchmark.scaledIterations {
                blackHole(compressed.withUnsafeBytes { decompressor.decompress(codec.blockCodec, $0, into: output) })
            }
        } setup: { Fixture() }
    }
}

/// 256 Hermes-like records: one PUBLISH frame, their DELIVER-layout forms, and a 64 KiB spill
/// block of such records (compressed per codec by `compressed(_:)`).
struct Fixture: Sendable {
    let publish: [UInt8]
    let delivered: [[UInt8]]
    let block: [UInt8]

    init() {
        let outbound = OutboundBuffer(initialCapacity: 128 * 1024)
        let mark = outbound.beginBatch(.publish)
        var payloads: [[UInt8]] = []
        for index in 0 ..< 256 {
            let text = #"{"session":"sess-\#(index / 16)","kind":"model_turn","model":"hermes-3","tokens_in":\#(800 + index),"tokens_out":96,"i":\#(index)}"#
            let payload = Array(text.utf8.prefix(128)) + [UInt8](repeating: 0x20, count: max(0, 128 - text.utf8.count))
            payloads.append(payload)
            payload.withUnsafeBytes { bytes in
                try? outbound.appendPublishRecord(RecordHeader(producerSequence: UInt64(index + 1), eventTimeNanos: 1_764_000_000_000_000_000),
                                                  session: UnsafeRawBufferPointer(start: nil, count: 0),
                                                  kind: UnsafeRawBufferPointer(start: nil, count: 0),
                                                  contentType: UnsafeRawBufferPointer(start: nil, count: 0), payload: bytes)
            }
        }
        outbound.endBatch(mark, count: 256)
        publish = outbound.bytes

        let inbound = InboundBuffer(limits: .standard)
        var records: [[UInt8]] = []
        publish.withUnsafeBytes { frame in
            try? inbound.decodeAll(frame) { decoded in
                guard case let .publish(batch) = decoded else { return }
                var sequence: UInt64 = 1
                for record in batch {
                    let producer: [UInt8] = Array("hermes-7f3a".utf8)
                    let size = DeliveredRecordLayout.encodedSize(producerLength: producer.count, record)
                    var bytes = [UInt8](repeating: 0, count: size)
                    bytes.withUnsafeMutableBytes { out in
                        producer.withUnsafeBytes { id in
                            if let base = out.baseAddress {
                                DeliveredRecordLayout.encode(into: base, relaySequence: sequence, ingestNanos: 1, producer: id, record)
                            }
                        }
                    }
                    records.append(bytes)
                    sequence += 1
                }
            }
        }
        delivered = records
        var block: [UInt8] = []
        while block.count < 64 * 1024 { for record in records where block.count < 64 * 1024 { block += record } }
        self.block = block
    }

    /// The block compressed with `codec` at level 1.
    func compressed(_ codec: SpillCodec) -> [UInt8] {
        let compressor = BlockCompressor(codec: codec, level: 1)
        var out = [UInt8](repeating: 0, count: compressor.bound(block.count))
        let size = out.withUnsafeMutableBytes { output in block.withUnsafeBytes { compressor.compress($0, into: output) } } ?? 0
        return Array(out.prefix(size))
    }
}
