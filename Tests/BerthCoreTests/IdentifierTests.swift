import BerthCore
import Testing

@Suite struct IdentifierTests {
    @Test func randomUUIDsAreVersion4AndDistinct() {
        let ids = (0..<2000).map { _ in UUIDString.random() }
        #expect(Set(ids).count == ids.count)
        for id in ids {
            #expect(UUIDString.isValid(id), "\(id)")
            let b = Array(id.utf8)
            #expect(b[14] == UInt8(ascii: "4"), "\(id)")
            #expect("89ab".utf8.contains(b[19]), "\(id)")
        }
    }
}
