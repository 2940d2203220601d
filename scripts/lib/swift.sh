# Sourced by the scripts that build: `swift` less one warning that no setting of ours can
# silence. swift-distributed-tracing (which async-http-client and Hummingbird bring in) leaves a
# file in one of its targets undeclared in its own manifest, and SwiftPM says so on every build;
# the fix belongs in that package. Every other line of swift's output passes untouched.
swift() {
  command swift "$@" 2> >(grep -v --line-buffered -E "'swift-distributed-tracing': found [0-9]+ file\(s\) which are unhandled|^ +[^ ]*/checkouts/swift-distributed-tracing/Sources/[^ ]*/CMakeLists\.txt$" >&2)
}
