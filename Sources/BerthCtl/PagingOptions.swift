import ArgumentParser
import BerthJSON

/// `--cursor`, `--limit` and `--all` of the list commands whose method pages with an opaque
/// `cursor`: declared once so that every such command spells, explains and sends them alike.
/// (`events list` pages by sequence number, `--after-seq`, and keeps its own options.)
struct PagingOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Continue from a previous page.", valueName: "cursor")) var cursor: String?
    @Option(help: ArgumentHelp("Page size.", valueName: "n")) var limit: Int?
    @Flag(help: "Follow next_cursor and list every page.") var all = false

    /// Sets `cursor` and `limit` in a list method's params, each only when given.
    func apply(to params: inout JSON) {
        params.set("cursor", cursor.json)
        params.set("limit", limit.json)
    }
}
