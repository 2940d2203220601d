import AllegroRing
import Testing

/// Single-threaded behaviour of the ring: sequencing, reclaiming, retention, wrap-around.
@Suite struct RecordRingTests {
    /// Fills a record with bytes derived from its sequence, so any byte can be checked.
    static func pattern(_ sequence: UInt64, _ space: UnsafeMutableRawBufferPointer) {
        for index in 0 ..< space.count { space[index] = UInt8(truncatingIfNeeded: sequence &* 31 &+ UInt64(index)) }
    }

    static func matches(_ sequence: UInt64, _ bytes: UnsafeRawBufferPointer) -> Bool {
        for index in 0 ..< bytes.count where bytes[index] != UInt8(truncatingIfNeeded: sequence &* 31 &+ UInt64(index)) {
            return false
        }
        return true
    }

    @Test func sequencesStartWhereAskedAndRecordsReadBack() {
        let ring = RecordRing(byteCapacity: 4096, slotCapacity: 64, firstSequence: 100)
        #expect(ring.head == 100 && ring.tail == 100 && ring.count == 0)
        for size in [0, 1, 7, 8, 100] {
            let sequence = ring.append(size: size) { space, sequence in Self.pattern(sequence, space) }
            #expect(sequence != nil)
        }
        #expect(ring.head == 105 && ring.tail == 100)
        for (offset, size) in [0, 1, 7, 8, 100].enumerated() {
            let record = ring.record(100 + UInt64(offset))
            #expect(record.count == size)
            #expect(Self.matches(100 + UInt64(offset), record))
        }
    }

    @Test func reclaimsOldestWhenNothingIsRetainedAndWrapsCleanly() {
        let ring = RecordRing(byteCapacity: 1024, slotCapacity: 1024)
        var written: UInt64 = 0
        for index in 0 ..< 5000 {
            let size = (index * 37) % 200
            guard let sequence = ring.append(size: size, { space, sequence in Self.pattern(sequence, space) }) else {
                Issue.record("append failed with nothing retained at \(index)")
                return
            }
            written = sequence
            // Everything still held reads back intact after each append.
            for held in ring.tail ..< ring.head {
                #expect(Self.matches(held, ring.record(held)))
            }
            #expect(ring.bytesInUse <= ring.byteCapacity)
        }
        #expect(written == 5000)
        #expect(ring.tail > 1)
    }

    @Test func neverReclaimsRecordsAGateHolds() {
        let ring = RecordRing(byteCapacity: 1024, slotCapacity: 16)
        let gate = ring.addGate(from: 1)
        var accepted = 0
        while ring.append(size: 100, { space, sequence in Self.pattern(sequence, space) }) != nil { accepted += 1 }
        #expect(accepted > 0 && accepted < 16)
        #expect(ring.tail == 1)
        // Releasing the first three makes room for more, and only those are reclaimed.
        gate.advance(to: 4)
        #expect(ring.append(size: 100, { space, sequence in Self.pattern(sequence, space) }) != nil)
        #expect(ring.tail >= 2 && ring.tail <= 4)
        for held in ring.tail ..< ring.head { #expect(Self.matches(held, ring.record(held))) }
    }

    @Test func slotCapacityBoundsRecordCount() {
        let ring = RecordRing(byteCapacity: 1 << 16, slotCapacity: 8)
        let gate = ring.addGate(from: 1)
        for _ in 0 ..< 8 { #expect(ring.append(size: 1, { _, _ in }) != nil) }
        #expect(ring.append(size: 1, { _, _ in }) == nil)
        gate.advance(to: 2)
        #expect(ring.append(size: 1, { _, _ in }) != nil)
        #expect(ring.count == 8)
    }

    @Test func aGateAddedLaterHoldsItsRecordsThoughTheOthersHadMovedOn() {
        // The ring keeps the gates' limit between appends; a gate added below it must lower it.
        let ring = RecordRing(byteCapacity: 1 << 16, slotCapacity: 8)
        let first = ring.addGate(from: 1)
        for _ in 0 ..< 8 { #expect(ring.append(size: 1, { _, _ in }) != nil) }
        first.advance(to: ring.head)
        #expect(ring.append(size: 1, { _, _ in }) != nil, "record 1 is reclaimed")
        #expect(ring.tail == 2)
        _ = ring.addGate(from: 2)
        #expect(ring.append(size: 1, { _, _ in }) == nil, "record 2 is held by the new gate")
        #expect(ring.tail == 2)
    }

    @Test func refusesARecordThatCanNeverFit() {
        let ring = RecordRing(byteCapacity: 256, slotCapacity: 8)
        #expect(ring.append(size: ring.maxRecordSize + 1, { _, _ in }) == nil)
        #expect(ring.append(size: -1, { _, _ in }) == nil)
        #expect(ring.append(size: ring.maxRecordSize, { _, _ in }) != nil)
        #expect(ring.head == 2)
    }
}
