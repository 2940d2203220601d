import Glibc

/// An IPv4 or IPv6 address and port, parsed from `HOST:PORT` (`[::1]:7400` for IPv6;
/// `localhost` means 127.0.0.1). Only numeric addresses and `localhost`: a relay's listen
/// address and a client's relay address are configuration, not names to resolve at run time.
public struct SocketAddress: Sendable, Equatable, CustomStringConvertible {
    public enum Host: Sendable, Equatable {
        case v4(in_addr_t)   // network byte order
        case v6([UInt8])     // 16 bytes
    }

    public var host: Host
    public var port: UInt16

    /// Why a `HOST:PORT` string was refused.
    public struct ParseError: Error, Equatable, Sendable, CustomStringConvertible {
        public var input: String
        public var reason: String
        public var description: String { "invalid address \"\(input)\": \(reason) (expected HOST:PORT, e.g. 127.0.0.1:7400 or [::1]:7400)" }
    }

    public init(parsing text: String) throws(ParseError) {
        let hostPart: Substring, portPart: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]"), text[text.index(after: close)...].hasPrefix(":") else {
                throw ParseError(input: text, reason: "an IPv6 address needs the form [ADDRESS]:PORT")
            }
            hostPart = text[text.index(after: text.startIndex) ..< close]
            portPart = text[text.index(close, offsetBy: 2)...]
        } else {
            guard let colon = text.lastIndex(of: ":") else { throw ParseError(input: text, reason: "no port") }
            hostPart = text[..<colon]
            portPart = text[text.index(after: colon)...]
        }
        guard let port = UInt16(portPart) else { throw ParseError(input: text, reason: "port must be 0 ... 65535") }
        self.port = port
        let name = hostPart == "localhost" ? "127.0.0.1" : String(hostPart)
        var v4 = in_addr()
        if inet_pton(AF_INET, name, &v4) == 1 {
            host = .v4(v4.s_addr)
            return
        }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, name, &v6) == 1 {
            host = .v6(withUnsafeBytes(of: v6) { Array($0) })
            return
        }
        throw ParseError(input: text, reason: "host must be a numeric IPv4 or IPv6 address or localhost")
    }

    public init(host: Host, port: UInt16) {
        self.host = host
        self.port = port
    }

    /// Where a process on this host reaches a socket listening here: a wildcard address
    /// (0.0.0.0, ::) becomes loopback; any other stays as it is.
    public var reachableLocally: SocketAddress {
        switch host {
        case let .v4(address) where address == 0: SocketAddress(host: .v4(in_addr_t(UInt32(0x7F00_0001).bigEndian)), port: port)
        case let .v6(bytes) where bytes.allSatisfy({ $0 == 0 }): SocketAddress(host: .v6([UInt8](repeating: 0, count: 15) + [1]), port: port)
        default: self
        }
    }

    /// True for 127.0.0.0/8 and ::1.
    public var isLoopback: Bool {
        switch host {
        case let .v4(address): return UInt32(bigEndian: address) >> 24 == 127
        case let .v6(bytes): return bytes == [UInt8](repeating: 0, count: 15) + [1]
        }
    }

    public var description: String {
        if case .v6 = host { return "[\(hostText)]:\(port)" }
        return "\(hostText):\(port)"
    }

    /// The numeric host alone: `127.0.0.1`, `::1`.
    public var hostText: String {
        switch host {
        case let .v4(address):
            var value = in_addr(s_addr: address)
            var text = [CChar](repeating: 0, count: Int(INET_ADDRSTRLEN))
            inet_ntop(AF_INET, &value, &text, socklen_t(text.count))
            return Self.text(text)
        case let .v6(bytes):
            var value = in6_addr()
            withUnsafeMutableBytes(of: &value) { $0.copyBytes(from: bytes) }
            var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
            inet_ntop(AF_INET6, &value, &text, socklen_t(text.count))
            return Self.text(text)
        }
    }

    private static func text(_ characters: [CChar]) -> String {
        String(decoding: characters.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    var family: Int32 {
        if case .v4 = host { return AF_INET }
        return AF_INET6
    }

    /// Calls `body` with this address as a `sockaddr`.
    func withSockaddr<T>(_ body: (UnsafePointer<sockaddr>, socklen_t) -> T) -> T {
        switch host {
        case let .v4(address):
            var storage = sockaddr_in()
            storage.sin_family = sa_family_t(AF_INET)
            storage.sin_port = port.bigEndian
            storage.sin_addr = in_addr(s_addr: address)
            return withUnsafePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
        case let .v6(bytes):
            var storage = sockaddr_in6()
            storage.sin6_family = sa_family_t(AF_INET6)
            storage.sin6_port = port.bigEndian
            withUnsafeMutableBytes(of: &storage.sin6_addr) { $0.copyBytes(from: bytes) }
            return withUnsafePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_in6>.size)) }
            }
        }
    }

    /// Reads an address the kernel filled in.
    static func from(_ storage: UnsafePointer<sockaddr_storage>) -> SocketAddress? {
        switch Int32(storage.pointee.ss_family) {
        case AF_INET:
            return storage.withMemoryRebound(to: sockaddr_in.self, capacity: 1) {
                SocketAddress(host: .v4($0.pointee.sin_addr.s_addr), port: UInt16(bigEndian: $0.pointee.sin_port))
            }
        case AF_INET6:
            return storage.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { pointer in
                let bytes = withUnsafeBytes(of: pointer.pointee.sin6_addr) { Array($0) }
                return SocketAddress(host: .v6(bytes), port: UInt16(bigEndian: pointer.pointee.sin6_port))
            }
        default:
            return nil
        }
    }
}
