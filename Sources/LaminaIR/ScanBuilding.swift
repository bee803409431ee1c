import LaminaSupport

extension Graph {
  /// Makes the body arguments of a scan over these operands (carried values, sequences,
  /// invariants): values typed as one step sees them, named `prefix.N`.
  public mutating func makeScanArguments(
    operands: [ValueID], layout: ScanLayout, prefix: String, location: SourceLocation
  ) -> [ValueID] {
    let types = layout.argumentTypes(operands: operands.map { type(of: $0) })
    return types.enumerated().map { position, type in
      makeValue(name: "\(prefix).\(position)", type: type, location: location)
    }
  }

  /// Turns the nodes appended since `mark` into the body of a scan node, appends the node, and
  /// returns its results (the final carried values, then the stacked per-step outputs).
  ///
  /// Values the body reads from outside (parameters, earlier results) become loop-invariant
  /// operands with body arguments of their own, so the body only reads its arguments.
  /// - Parameter results: the body's results: the carried values' next values, then the outputs.
  public mutating func finishScan(
    bodyFrom mark: Int, operands: [ValueID], layout: ScanLayout, arguments: [ValueID],
    results bodyResults: [ValueID], location: SourceLocation
  ) throws(ShapeError) -> [ValueID] {
    var body = Array(nodes[mark...])
    nodes.removeSubrange(mark...)
    var operands = operands
    var arguments = arguments
    var layout = layout
    var inside = Set(arguments)
    for node in body { inside.formUnion(node.results) }
    var captured: [ValueID: ValueID] = [:]
    func capture(_ value: ValueID) -> ValueID {
      if inside.contains(value) { return value }
      if let argument = captured[value] { return argument }
      let argument = makeValue(
        name: "\(self[value].name).inside", type: self[value].type, location: location)
      captured[value] = argument
      operands.append(value)
      arguments.append(argument)
      layout.invariants += 1
      return argument
    }
    for index in body.indices {
      body[index].operands = body[index].operands.map(capture)
    }
    let results = bodyResults.map(capture)
    guard let definition = OpRegistry.definition(Ops.scan.name) else {
      throw ShapeError("scan is not in the op table")
    }
    let region = RegionTypes(
      arguments: arguments.map { type(of: $0) }, results: results.map { type(of: $0) })
    let (types, attributes) = try definition.inferTypes(
      operands: operands.map { type(of: $0) }, attributes: layout.attributes, region: region)
    let values = types.map { type in
      makeValue(name: temporaryName(), type: type, location: location)
    }
    nodes.append(
      Node(
        op: Ops.scan.name, operands: operands, attributes: attributes, results: values,
        location: location, body: body, regionArguments: arguments, regionResults: results))
    return values
  }

  /// Appends a scan whose body `body` builds from its arguments (carried values, then one step of
  /// each sequence, then the invariants), returning the body's results (next carried values, then
  /// per-step outputs). Returns the scan's results.
  public mutating func addScan(
    initial: [ValueID], sequences: [ValueID], invariants: [ValueID], reverse: Bool,
    location: SourceLocation, prefix: String = "step",
    body: (inout Graph, [ValueID]) throws(ShapeError) -> [ValueID]
  ) throws(ShapeError) -> [ValueID] {
    let layout = ScanLayout(
      carried: initial.count, sequences: sequences.count, invariants: invariants.count,
      reverse: reverse)
    let operands = initial + sequences + invariants
    let arguments = makeScanArguments(
      operands: operands, layout: layout, prefix: prefix, location: location)
    let mark = nodes.count
    let results = try body(&self, arguments)
    return try finishScan(
      bodyFrom: mark, operands: operands, layout: layout, arguments: arguments, results: results,
      location: location)
  }
}
