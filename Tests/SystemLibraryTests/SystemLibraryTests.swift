import CAllegroSys
import CZlib
import Glibc
import Testing

/// Smoke tests: the system library module maps link and the C interfaces behave.
@Suite struct SystemLibraryTests {
    @Test func zlibRoundTrip() throws {
        let input = Array(String(repeating: #"{"event":"model_turn","session":"s-1","tokens":812}"#, count: 200).utf8)
        var compressed = [UInt8](repeating: 0, count: Int(compressBound(uLong(input.count))))
        var compressedLength = uLongf(compressed.count)
        let status = compress2(&compressed, &compressedLength, input, uLong(input.count), 1)
        #expect(status == Z_OK)
        #expect(Int(compressedLength) < input.count / 10)
        var output = [UInt8](repeating: 0, count: input.count)
        var outputLength = uLongf(output.count)
        #expect(uncompress(&output, &outputLength, compressed, compressedLength) == Z_OK)
        #expect(output == input)
        // The streaming API's init macro does not import; its function does.
        var stream = z_stream()
        #expect(deflateInit_(&stream, 1, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK)
        #expect(deflateEnd(&stream) == Z_OK)
    }

    @Test func epollAndEventfdAreReachable() throws {
        let epoll = epoll_create1(Int32(EPOLL_CLOEXEC))
        #expect(epoll >= 0)
        let event = eventfd(0, Int32(EFD_NONBLOCK | EFD_CLOEXEC))
        #expect(event >= 0)
        var registration = epoll_event()
        registration.events = EPOLLIN.rawValue
        registration.data.fd = event
        #expect(epoll_ctl(epoll, EPOLL_CTL_ADD, event, &registration) == 0)
        var one: UInt64 = 1
        #expect(write(event, &one, 8) == 8)
        var ready = [epoll_event](repeating: epoll_event(), count: 4)
        #expect(epoll_wait(epoll, &ready, 4, 1000) == 1)
        #expect(ready[0].data.fd == event)
        close(event)
        close(epoll)
    }
}
