/// Prints memory plans for `lamina dump --after memory-plan`: per entry point, a table of every
/// arena value (buffer, offset, size, lifetime, in-place notes) and a summary of arena bytes against
/// the no-reuse sum and the lower bound. Lines start with `//`, so the dump still reads back as IR.
public struct MemoryPlanPrinter {
  /// Each summary evaluates the sizes with every symbol bound to each of these values.
  public var symbolValues: [Int]

  public init(symbolValues: [Int] = [1, 64]) { self.symbolValues = symbolValues }

  /// The plans of every entry point of `graph`, in emission order.
  public func print(_ graph: Graph) -> String {
    var out = ""
    for entry in EntryPoint.all(in: graph) {
      guard let plan = graph.memoryPlans[entry.name] else { continue }
      out += print(plan, in: graph)
      out += keptLine(entry, in: graph)
    }
    return out
  }

  /// The values `entry` keeps between calls outside the arena (`EntryPoint.keptNodes`), if any,
  /// and those of them it holds only until convolutions pack them (`EntryPoint.transientValues`).
  func keptLine(_ entry: EntryPoint, in graph: Graph) -> String {
    let schedule = entry.schedule(in: graph)
    let kept = entry.keptNodes(in: graph, schedule: schedule)
    guard !kept.isEmpty else { return "" }
    let transient = entry.transientValues(in: graph, schedule: schedule)
    let values = kept.sorted().flatMap { graph.nodes[$0].results }
    func describe(_ values: [ValueID]) -> String {
      let bytes = values.reduce(0) { total, value in
        let type = graph.type(of: value)
        return total + (type.boundedStaticElementCount ?? 0) * type.dtype.byteSize
      }
      let shown = values.prefix(6).map { "%" + graph[$0].name }.joined(separator: ", ")
      return "\(values.count) values, \(bytes) bytes: \(shown)\(values.count > 6 ? ", ..." : "")"
    }
    let held = values.filter { transient[$0] == nil }
    var text = ""
    if !held.isEmpty {
      text +=
        "// kept by \(entry.name) between calls, outside the arena (values of parameters, state and constants alone, computed again when the parameter version moves): \(describe(held))\n"
    }
    let packed = values.filter { transient[$0] != nil }
    if !packed.isEmpty {
      text +=
        "// computed by \(entry.name) when the parameter version moves and freed once convolutions have packed them (weights of parameters alone): \(describe(packed))\n"
    }
    return text
  }

  public func print(_ plan: MemoryPlan, in graph: Graph) -> String {
    let arenaValues = plan.bufferOf.keys.sorted()
    var out =
      "// memory plan \(plan.entryPoint): \(plan.schedule.count) steps, \(arenaValues.count) arena values in \(plan.buffers.count) buffers (offsets rounded up to 64 at run time)\n"
    // One offset column per layout: `offset` alone, or `offset` (any value) and `offset≥64`.
    let offsetHeaders = plan.layouts.map { layout in
      layout.minimumSymbolValue <= 1 ? "offset" : "offset≥\(layout.minimumSymbolValue)"
    }
    var rows: [[String]] = [["value", "buffer"] + offsetHeaders + ["size", "lifetime", "notes"]]
    for value in arenaValues {
      let index = plan.bufferOf[value]!
      let buffer = plan.buffers[index]
      let lifetime = plan.lifetimes[value].map { "[\($0.lowerBound), \($0.upperBound)]" } ?? "?"
      var notes: [String] = []
      if let operand = plan.inPlace[value] { notes.append("in place of %" + graph[operand].name) }
      if let placement = plan.concatPlacements[value] {
        notes.append(
          "written in %\(graph[placement.concat].name) at +\(placement.offset) (concat in place)")
      }
      // An enclosed buffer starts inside its outermost one: `b7 + 1024` (b7's start, rounded).
      let (outer, inside) = plan.outermost(index)
      let offsets =
        outer == index
        ? plan.layouts.map { $0.offsets[index].description }
        : plan.layouts.map { _ in "b\(outer) + \(inside)" }
      rows.append(
        ["%" + graph[value].name, "b\(index)"] + offsets
          + [buffer.size.description, lifetime, notes.joined(separator: "; ")])
    }
    for (value, target) in plan.directUpdates.sorted(by: { $0.key < $1.key }) {
      rows.append(
        ["%" + graph[value].name, "-"] + plan.layouts.map { _ in "-" }
          + [
            SymbolicSize(bytesOf: graph.type(of: value)).description, "-",
            "computed straight into %" + graph[target].name + " (no copy)",
          ])
    }
    let widths = (0..<rows[0].count).map { column in rows.map { $0[column].count }.max()! }
    for row in rows {
      let line = zip(row, widths).map { $0.padding(toLength: $1, withPad: " ", startingAt: 0) }
        .joined(separator: "  ")
      out += "//   " + String(line.reversed().drop { $0 == " " }.reversed()) + "\n"
    }
    var symbols: [String] = []
    for buffer in plan.buffers {
      for symbol in buffer.size.terms.keys.joined() where !symbols.contains(symbol) {
        symbols.append(symbol)
      }
    }
    symbols.sort()
    let points: [[String: Int]] =
      symbols.isEmpty
      ? [[:]]
      : symbolValues.map { value in Dictionary(uniqueKeysWithValues: symbols.map { ($0, value) }) }
    let parts = points.map { bindings -> String in
      let label =
        bindings.isEmpty
        ? "static"
        : bindings.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(
          separator: ",")
      let arena = plan.arenaBytes(bindings)
      let bound = plan.lowerBound(bindings)
      let ratio = bound == 0 ? 1 : Double(arena) / Double(bound)
      let layout = plan.layouts[plan.layoutIndex(for: bindings)]
      let used =
        plan.layouts.count == 1 || layout.minimumSymbolValue <= 1
        ? "" : " (layout offset≥\(layout.minimumSymbolValue))"
      return
        "\(label): arena\(used) \(arena) B, no reuse \(plan.noReuseBytes(bindings)) B, lower bound \(bound) B, arena/lower bound \(formatRatio(ratio))"
    }
    out += "// summary \(plan.entryPoint): " + parts.joined(separator: "; ") + "\n"
    return out
  }

  private func formatRatio(_ ratio: Double) -> String {
    let hundredths = Int((ratio * 100).rounded())
    let fraction = String(hundredths % 100)
    return "\(hundredths / 100).\(fraction.count == 1 ? "0" + fraction : fraction)"
  }
}
