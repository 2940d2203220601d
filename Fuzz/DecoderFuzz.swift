// libFuzzer entry point for the AllegroWire decoder. Built by scripts/fuzz together with the
// AllegroWire sources as one module (so no import), with -sanitize=fuzzer,address.
//
// Each input is split: its first byte picks the limits and the chunk size, the rest is the stream.
// Every frame decoded is rendered (touching every view) and, for record batches, iterated.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzDecoder(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size > 0 else { return 0 }
    let control = data[0]
    let stream = UnsafeRawBufferPointer(start: data + 1, count: size - 1)
    let limits: DecodeLimits = control & 1 == 0 ? .standard : .handshake
    let chunk = 1 + Int(control >> 1)
    let buffer = InboundBuffer(limits: limits, initialCapacity: 64)
    var offset = 0
    var rendered = 0
    do throws(WireError) {
        while offset < stream.count {
            let end = min(offset + chunk, stream.count)
            try buffer.decodeAll(UnsafeRawBufferPointer(rebasing: stream[offset ..< end])) { frame in
                rendered &+= FrameJSON.render(frame).utf8.count
                switch frame {
                case let .publish(batch): for record in batch { rendered &+= record.payload.count }
                case let .deliver(batch): for record in batch { rendered &+= record.payload.count }
                default: break
                }
            }
            offset = end
        }
        try buffer.finish()
    } catch {
        rendered &+= error.description.utf8.count
    }
    return rendered < 0 ? 1 : 0
}
