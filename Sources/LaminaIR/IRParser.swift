import LaminaSupport

/// Reads the textual IR that `IRPrinter` writes.
///
/// Result types may be omitted (`%y = relu(%x)`); shape inference fills them in. Errors are diagnostics
/// located in the IR text. Op names and attributes are checked by the verifier, not here, so that one
/// malformed node does not hide the others' problems.
public struct IRParser {
  private var tokens: [IRToken]
  private var position = 0
  private let path: String
  private var sourcePath: String?
  private var diagnostics = DiagnosticBag()

  /// Parses one graph from `text`; `path` names the IR file in diagnostics.
  public static func parse(_ text: String, path: String) throws -> Graph {
    var lexer = IRLexer(text: text, path: path)
    let tokens = try lexer.tokenize()
    var parser = IRParser(tokens: tokens, path: path)
    let graph = parser.parseGraph()
    try parser.diagnostics.throwIfErrors()
    return graph!
  }

  private init(tokens: [IRToken], path: String) {
    self.tokens = tokens
    self.path = path
  }

  private var current: IRToken { tokens[position] }

  private mutating func advance() -> IRToken {
    let token = tokens[position]
    if position < tokens.count - 1 { position += 1 }
    return token
  }

  private mutating func accept(_ kind: IRToken.Kind, _ text: String? = nil) -> IRToken? {
    guard current.kind == kind, text == nil || current.text == text else { return nil }
    return advance()
  }

  private mutating func expect(_ kind: IRToken.Kind, _ text: String? = nil, _ what: String) throws
    -> IRToken
  {
    if let token = accept(kind, text) { return token }
    throw Diagnostic.error(
      "expected \(what), found \(current.kind == .end ? "end of file" : "'\(current.text)'")",
      at: current.location)
  }

  private mutating func parseGraph() -> Graph? {
    do {
      _ = try expect(.identifier, "graph", "'graph'")
      let name = try expect(.global, nil, "a graph name like @model")
      _ = try expect(.punctuation, "{", "'{'")
      var graph = Graph(name: name.text, sourceFile: nil)
      while current.kind != .end, !(current.kind == .punctuation && current.text == "}") {
        let start = position
        do {
          try parseStatement(into: &graph)
        } catch let diagnostic as Diagnostic {
          diagnostics.append(diagnostic)
          // Resume at the next line so later problems are reported too.
          let line = tokens[start].location.line
          while current.kind != .end, current.location.line == line { _ = advance() }
        }
      }
      _ = try expect(.punctuation, "}", "'}' closing the graph")
      if current.kind != .end {
        diagnostics.error("unexpected text after the graph", at: current.location)
      }
      if sourcePath != nil { graph.sourceFile = sourcePath }
      return graph
    } catch let diagnostic as Diagnostic {
      diagnostics.append(diagnostic)
    } catch {
      diagnostics.error("\(error)", at: current.location)
    }
    return nil
  }

  private mutating func parseStatement(into graph: inout Graph) throws {
    let keyword = current
    if keyword.kind == .identifier {
      switch keyword.text {
      case "source":
        _ = advance()
        sourcePath = try expect(.string, nil, "a quoted file path").text
        return
      case "input":
        _ = advance()
        let name = try parseValueName(defining: graph)
        _ = try expect(.punctuation, ":", "':' before the type")
        let type = try parseType()
        let location = try parseLocation(default: name.location)
        graph.addInput(name: name.text, type: type, location: location)
        return
      case "param":
        _ = advance()
        let name = try parseValueName(defining: graph)
        _ = try expect(.punctuation, ":", "':' before the type")
        let type = try parseType()
        _ = try expect(.punctuation, "=", "'=' before the initializer")
        let initializerName = try expect(.identifier, nil, "an initializer name")
        let arguments = try parseLabelledArguments()
        let frozen = accept(.identifier, "frozen") != nil
        let location = try parseLocation(default: name.location)
        graph.addParam(
          name: name.text, type: type, initializer: Initializer(initializerName.text, arguments),
          trainable: !frozen, location: location)
        return
      case "output", "loss":
        _ = advance()
        let publicName = try expect(.identifier, nil, "a \(keyword.text) name")
        _ = try expect(.punctuation, "=", "'='")
        let value = try parseUse(graph)
        let named = NamedValue(name: publicName.text, value: value)
        if keyword.text == "output" {
          graph.outputs.append(named)
        } else {
          graph.losses.append(named)
        }
        return
      case "state":
        _ = advance()
        // Model state names no training step: `state %bn.running_mean : f32[16] = zeros()`.
        let stepName =
          current.kind == .local ? nil : try expect(.identifier, nil, "a training step name")
        let name = try parseValueName(defining: graph)
        _ = try expect(.punctuation, ":", "':' before the type")
        let type = try parseType()
        _ = try expect(.punctuation, "=", "'=' before the initializer")
        let initializerName = try expect(.identifier, nil, "an initializer name")
        let arguments = try parseLabelledArguments()
        let location = try parseLocation(default: name.location)
        graph.addState(
          name: name.text, type: type, initializer: Initializer(initializerName.text, arguments),
          step: stepName?.text, location: location)
        return
      case "update":
        _ = advance()
        if current.kind == .local {
          // A model state's update rule: `update %target = %value [when %trigger]`.
          let target = try parseUse(graph)
          _ = try expect(.punctuation, "=", "'='")
          let value = try parseUse(graph)
          let trigger = accept(.identifier, "when") != nil ? try parseUse(graph) : nil
          graph.stateUpdates.append(StateUpdate(target: target, value: value, trigger: trigger))
          return
        }
        let (step, target, value) = try parseStepBinding(graph)
        graph.assignments.append(Assignment(step: step, target: target, value: value))
        return
      case "grad":
        _ = advance()
        let (step, parameter, gradient) = try parseStepBinding(graph)
        graph.gradients.append(
          ParameterGradient(step: step, parameter: parameter, gradient: gradient))
        return
      case "train":
        _ = advance()
        let stepName = try expect(.identifier, nil, "a training step name")
        _ = try expect(.punctuation, "=", "'='")
        let optimizer = try expect(.identifier, nil, "an optimizer name")
        let attributes = try parseAttributeDictionary()
        let location = try parseLocation(default: stepName.location)
        graph.trainSteps.append(
          TrainStep(
            name: stepName.text, optimizer: optimizer.text, attributes: attributes,
            location: location))
        return
      default:
        break
      }
    }
    guard keyword.kind == .local else {
      throw Diagnostic.error(
        "expected a node (%name = op(...)) or a declaration, found '\(keyword.text)'",
        at: keyword.location)
    }
    graph.nodes.append(try parseNode(startingWith: keyword, into: &graph))
  }

  /// `%a, %b = op(%x, %y) {attributes} : types`, and for `fused` the member block `{ ... }`.
  private mutating func parseNode(startingWith first: IRToken, into graph: inout Graph) throws
    -> Node
  {
    // A fused node's results are defined by its members, so its header only names them.
    var probe = position
    while probe < tokens.count - 1 && tokens[probe].text != "=" { probe += 1 }
    let isFused = probe + 1 < tokens.count && tokens[probe + 1].text == Node.fusedOp
    var resultNames = [
      isFused
        ? try expect(.local, nil, "a value name like %x") : try parseValueName(defining: graph)
    ]
    while accept(.punctuation, ",") != nil {
      resultNames.append(
        isFused
          ? try expect(.local, nil, "a value name like %x") : try parseValueName(defining: graph))
    }
    _ = try expect(.punctuation, "=", "'=' after the result name")
    let op = try expect(.identifier, nil, "an op name")
    _ = try expect(.punctuation, "(", "'(' after the op name")
    var operands: [ValueID] = []
    if accept(.punctuation, ")") == nil {
      repeat { operands.append(try parseUse(graph)) } while accept(.punctuation, ",") != nil
      _ = try expect(.punctuation, ")", "')' closing the operands")
    }
    let attributes = try parseAttributeDictionary()
    var types: [TensorType?] = Array(repeating: nil, count: resultNames.count)
    if accept(.punctuation, ":") != nil {
      for index in resultNames.indices {
        if index > 0 { _ = try expect(.punctuation, ",", "',' between result types") }
        types[index] = try parseType()
      }
    }
    let nodeLocation = try parseLocation(default: op.location)
    if isFused {
      _ = try expect(.punctuation, "{", "'{' opening the fused node's members")
      var body: [Node] = []
      while accept(.punctuation, "}") == nil {
        guard current.kind == .local else {
          throw Diagnostic.error(
            "expected a member node or '}', found '\(current.text)'", at: current.location)
        }
        body.append(try parseNode(startingWith: current, into: &graph))
      }
      let results = try resultNames.map { name in
        guard let value = graph.value(named: name.text),
          body.contains(where: { $0.results.contains(value) })
        else {
          throw Diagnostic.error(
            "fused result %\(name.text) is not computed by a member", at: name.location)
        }
        return value
      }
      return Node(
        op: op.text, operands: operands, attributes: attributes, results: results,
        location: nodeLocation, body: body)
    }
    if OpRegistry.definition(op.text)?.region != nil {
      return try parseRegion(
        op: op.text, operands: operands, attributes: attributes,
        resultNames: resultNames, types: types, location: nodeLocation, into: &graph)
    }
    let results = zip(resultNames, types).map { name, type in
      graph.makeValue(name: name.text, type: type, location: nodeLocation)
    }
    return Node(
      op: op.text, operands: operands, attributes: attributes, results: results,
      location: nodeLocation)
  }

  /// The body of a region node: `{ args(%a : type, ...) members... yield(%r, ...) }`.
  private mutating func parseRegion(
    op: String, operands: [ValueID], attributes: [String: Attribute], resultNames: [IRToken],
    types: [TensorType?], location: SourceLocation, into graph: inout Graph
  ) throws -> Node {
    _ = try expect(.punctuation, "{", "'{' opening the \(op) node's body")
    _ = try expect(.identifier, "args", "'args(...)' naming the body's arguments")
    _ = try expect(.punctuation, "(", "'(' after args")
    var arguments: [ValueID] = []
    if accept(.punctuation, ")") == nil {
      repeat {
        let name = try parseValueName(defining: graph)
        var type: TensorType?
        if accept(.punctuation, ":") != nil { type = try parseType() }
        arguments.append(graph.makeValue(name: name.text, type: type, location: name.location))
      } while accept(.punctuation, ",") != nil
      _ = try expect(.punctuation, ")", "')' closing the arguments")
    }
    var body: [Node] = []
    while !(current.kind == .identifier && current.text == "yield") {
      guard current.kind == .local else {
        throw Diagnostic.error(
          "expected a body node or 'yield(...)', found '\(current.text)'", at: current.location)
      }
      body.append(try parseNode(startingWith: current, into: &graph))
    }
    _ = advance()
    _ = try expect(.punctuation, "(", "'(' after yield")
    var yielded: [ValueID] = []
    if accept(.punctuation, ")") == nil {
      repeat { yielded.append(try parseUse(graph)) } while accept(.punctuation, ",") != nil
      _ = try expect(.punctuation, ")", "')' closing the yielded values")
    }
    _ = try expect(.punctuation, "}", "'}' closing the \(op) node's body")
    let results = zip(resultNames, types).map { name, type in
      graph.makeValue(name: name.text, type: type, location: location)
    }
    return Node(
      op: op, operands: operands, attributes: attributes, results: results, location: location,
      body: body, regionArguments: arguments, regionResults: yielded)
  }

  /// `STEP %target = %value`, the rest of a `grad` or `update` line.
  private mutating func parseStepBinding(_ graph: Graph) throws -> (String, ValueID, ValueID) {
    let step = try expect(.identifier, nil, "a training step name")
    let target = try parseUse(graph)
    _ = try expect(.punctuation, "=", "'='")
    return (step.text, target, try parseUse(graph))
  }

  private mutating func parseValueName(defining graph: Graph) throws -> IRToken {
    let token = try expect(.local, nil, "a value name like %x")
    if graph.value(named: token.text) != nil {
      throw Diagnostic.error("value %\(token.text) is defined twice", at: token.location)
    }
    return token
  }

  private mutating func parseUse(_ graph: Graph) throws -> ValueID {
    let token = try expect(.local, nil, "a value like %x")
    guard let value = graph.value(named: token.text) else {
      throw Diagnostic.error(
        "use of undefined value %\(token.text)", at: token.location,
        help: closestName(to: token.text, among: graph.values.map(\.name)).map {
          "did you mean %\($0)?"
        })
    }
    return value
  }

  private mutating func parseType() throws -> TensorType {
    let dtypeToken = try expect(.identifier, nil, "a type like f32[batch, 64]")
    guard let dtype = DType(rawValue: dtypeToken.text) else {
      throw Diagnostic.error(
        "unknown dtype '\(dtypeToken.text)' (expected f32, f64, i32 or i64)",
        at: dtypeToken.location)
    }
    _ = try expect(.punctuation, "[", "'[' starting the shape")
    var shape: [Dim] = []
    if accept(.punctuation, "]") == nil {
      repeat { shape.append(try parseDim()) } while accept(.punctuation, ",") != nil
      _ = try expect(.punctuation, "]", "']' closing the shape")
    }
    return TensorType(dtype, shape)
  }

  private mutating func parseDim() throws -> Dim {
    var dim = Dim(1)
    repeat {
      let token = advance()
      switch token.kind {
      case .integer:
        guard let value = Int(token.text), value >= 0 else {
          throw Diagnostic.error("bad dimension '\(token.text)'", at: token.location)
        }
        let (factor, overflow) = dim.factor.multipliedReportingOverflow(by: value)
        guard !overflow else {
          throw Diagnostic.error("dimension too large at '\(token.text)'", at: token.location)
        }
        dim = Dim(factor: factor, symbols: dim.symbols)
      case .identifier:
        dim = dim * Dim(symbol: token.text)
      default:
        throw Diagnostic.error("expected a dimension, found '\(token.text)'", at: token.location)
      }
    } while accept(.punctuation, "*") != nil
    return dim
  }

  /// `(name: value, ...)` after an initializer name.
  private mutating func parseLabelledArguments() throws -> [String: Attribute] {
    _ = try expect(.punctuation, "(", "'(' after the initializer name")
    var arguments: [String: Attribute] = [:]
    if accept(.punctuation, ")") != nil { return arguments }
    repeat {
      let label = try expect(.identifier, nil, "an argument label")
      _ = try expect(.punctuation, ":", "':' after the label")
      arguments[label.text] = try parseAttributeValue()
    } while accept(.punctuation, ",") != nil
    _ = try expect(.punctuation, ")", "')'")
    return arguments
  }

  /// `{name = value, ...}`, or nothing.
  private mutating func parseAttributeDictionary() throws -> [String: Attribute] {
    guard accept(.punctuation, "{") != nil else { return [:] }
    var attributes: [String: Attribute] = [:]
    if accept(.punctuation, "}") != nil { return attributes }
    repeat {
      let name = try expect(.identifier, nil, "an attribute name")
      _ = try expect(.punctuation, "=", "'=' after the attribute name")
      if attributes[name.text] != nil {
        throw Diagnostic.error("attribute '\(name.text)' is given twice", at: name.location)
      }
      attributes[name.text] = try parseAttributeValue()
    } while accept(.punctuation, ",") != nil
    _ = try expect(.punctuation, "}", "'}' closing the attributes")
    return attributes
  }

  private mutating func parseAttributeValue() throws -> Attribute {
    let token = current
    switch token.kind {
    case .integer:
      _ = advance()
      guard let value = Int(token.text) else {
        throw Diagnostic.error("integer '\(token.text)' is out of range", at: token.location)
      }
      return .int(value)
    case .float:
      _ = advance()
      return .float(try parseFloat(token))
    case .string:
      _ = advance()
      return .string(token.text)
    case .identifier:
      _ = advance()
      switch token.text {
      case "true": return .bool(true)
      case "false": return .bool(false)
      case "nan", "inf": return .float(try parseFloat(token))
      default:
        if let dtype = DType(rawValue: token.text) { return .dtype(dtype) }
        throw Diagnostic.error(
          "unexpected '\(token.text)' in an attribute value", at: token.location)
      }
    case .punctuation where token.text == "[":
      return try parseList()
    default:
      throw Diagnostic.error(
        "expected an attribute value, found '\(token.text)'", at: token.location)
    }
  }

  private func parseFloat(_ token: IRToken) throws -> Double {
    switch token.text {
    case "nan": return .nan
    case "inf": return .infinity
    case "-inf": return -.infinity
    default:
      guard let value = Double(token.text) else {
        throw Diagnostic.error("bad number '\(token.text)'", at: token.location)
      }
      return value
    }
  }

  /// A bracketed list: integers, numbers, a shape (`[batch, 64]`) or an index (`[:, -1]`).
  private mutating func parseList() throws -> Attribute {
    let open = try expect(.punctuation, "[", "'['")
    enum Item {
      case int(Int)
      case float(Double)
      case dim(Dim)
      case slice(SliceIndex)
    }
    var items: [Item] = []
    if accept(.punctuation, "]") == nil {
      repeat {
        let token = current
        if token.kind == .identifier {
          items.append(.dim(try parseDim()))
        } else if token.kind == .float {
          _ = advance()
          items.append(.float(try parseFloat(token)))
        } else {
          // An integer, a range, or an integer times symbols.
          var start: Int?
          if token.kind == .integer {
            _ = advance()
            guard let value = Int(token.text) else {
              throw Diagnostic.error("integer '\(token.text)' is out of range", at: token.location)
            }
            start = value
            if accept(.punctuation, "*") != nil {
              let rest = try parseDim()
              let (factor, overflow) = value.multipliedReportingOverflow(by: rest.factor)
              guard !overflow else {
                throw Diagnostic.error(
                  "dimension too large at '\(token.text)'", at: token.location)
              }
              items.append(.dim(Dim(factor: factor, symbols: rest.symbols)))
              continue
            }
          }
          if accept(.punctuation, ":") != nil {
            let stop = try parseOptionalInt()
            var step = 1
            if accept(.punctuation, ":") != nil { step = try parseOptionalInt() ?? 1 }
            items.append(.slice(.range(start: start, stop: stop, step: step)))
          } else if let start {
            items.append(.int(start))
          } else {
            throw Diagnostic.error(
              "expected a list element, found '\(token.text)'", at: token.location)
          }
        }
      } while accept(.punctuation, ",") != nil
      _ = try expect(.punctuation, "]", "']' closing the list")
    }
    if items.contains(where: { if case .slice = $0 { true } else { false } }) {
      return .slices(
        try items.map { item in
          switch item {
          case .int(let value): return .index(value)
          case .slice(let slice): return slice
          default:
            throw Diagnostic.error("an index list mixes ranges and shapes", at: open.location)
          }
        })
    }
    if items.contains(where: { if case .dim = $0 { true } else { false } }) {
      return .dims(
        try items.map { item in
          switch item {
          case .int(let value): return Dim(value)
          case .dim(let dim): return dim
          default:
            throw Diagnostic.error("a shape list has a non-integer element", at: open.location)
          }
        })
    }
    if items.contains(where: { if case .float = $0 { true } else { false } }) {
      return .floats(
        items.map { item in
          switch item {
          case .int(let value): Double(value)
          case .float(let value): value
          default: 0
          }
        })
    }
    return .ints(items.map { if case .int(let value) = $0 { value } else { 0 } })
  }

  private mutating func parseOptionalInt() throws -> Int? {
    guard current.kind == .integer else { return nil }
    let token = advance()
    guard let value = Int(token.text) else {
      throw Diagnostic.error("integer '\(token.text)' is out of range", at: token.location)
    }
    return value
  }

  /// An optional `loc(line:column:length)`; locations then refer to the graph's `source` file.
  private mutating func parseLocation(default fallback: SourceLocation) throws -> SourceLocation {
    guard accept(.identifier, "loc") != nil else { return fallback }
    _ = try expect(.punctuation, "(", "'(' after loc")
    var numbers: [Int] = []
    repeat {
      let token = try expect(.integer, nil, "a line or column number")
      numbers.append(Int(token.text) ?? 0)
    } while accept(.punctuation, ":") != nil
    _ = try expect(.punctuation, ")", "')' closing loc")
    guard numbers.count == 3 else {
      throw Diagnostic.error("loc takes line:column:length", at: fallback)
    }
    return SourceLocation(
      file: sourcePath ?? path, line: numbers[0], column: numbers[1], length: numbers[2])
  }
}

/// A token of the textual IR.
struct IRToken {
  enum Kind {
    case identifier, local, global, integer, float, string, punctuation, end
  }
  var kind: Kind
  var text: String
  var location: SourceLocation
}

/// Splits IR text into tokens; `//` comments are skipped.
struct IRLexer {
  private let scalars: [Unicode.Scalar]
  private let path: String
  private var index = 0
  private var line = 1
  private var column = 1

  init(text: String, path: String) {
    scalars = Array(text.unicodeScalars)
    self.path = path
  }

  mutating func tokenize() throws -> [IRToken] {
    var tokens: [IRToken] = []
    var diagnostics = DiagnosticBag()
    while true {
      skipSpaceAndComments()
      let location = SourceLocation(file: path, line: line, column: column)
      guard index < scalars.count else {
        tokens.append(IRToken(kind: .end, text: "", location: location))
        break
      }
      let scalar = scalars[index]
      if scalar == "%" || scalar == "@" {
        advance()
        let name: String
        if index < scalars.count, scalars[index] == "\"" {
          guard let quoted = readString() else {
            diagnostics.error("unterminated string", at: location)
            break
          }
          name = quoted
        } else {
          name = read { IRLexer.isNameCharacter($0) }
        }
        if name.isEmpty { diagnostics.error("expected a name after '\(scalar)'", at: location) }
        tokens.append(
          IRToken(kind: scalar == "%" ? .local : .global, text: name, location: span(location)))
      } else if IRLexer.isIdentifierStart(scalar) {
        let word = read { IRLexer.isIdentifierStart($0) || ("0"..."9").contains($0) }
        tokens.append(IRToken(kind: .identifier, text: word, location: span(location)))
      } else if ("0"..."9").contains(scalar) || (scalar == "-" && nextIsNumberOrInf()) {
        tokens.append(readNumber(location))
      } else if scalar == "\"" {
        guard let text = readString() else {
          diagnostics.error("unterminated string", at: location)
          break
        }
        tokens.append(IRToken(kind: .string, text: text, location: span(location)))
      } else if "{}()[],:=*".unicodeScalars.contains(scalar) {
        advance()
        tokens.append(IRToken(kind: .punctuation, text: String(scalar), location: location))
      } else {
        diagnostics.error("unexpected character '\(scalar.escaped(asASCII: true))'", at: location)
        advance()
      }
    }
    try diagnostics.throwIfErrors()
    return tokens
  }

  private func span(_ start: SourceLocation) -> SourceLocation {
    var location = start
    location.length = line == start.line ? max(1, column - start.column) : 1
    return location
  }

  private mutating func advance() {
    if scalars[index] == "\n" {
      line += 1
      column = 1
    } else {
      column += 1
    }
    index += 1
  }

  private mutating func read(while predicate: (Unicode.Scalar) -> Bool) -> String {
    var text = ""
    while index < scalars.count, predicate(scalars[index]) {
      text.unicodeScalars.append(scalars[index])
      advance()
    }
    return text
  }

  private mutating func skipSpaceAndComments() {
    while index < scalars.count {
      if scalars[index].properties.isWhitespace {
        advance()
      } else if scalars[index] == "/", index + 1 < scalars.count, scalars[index + 1] == "/" {
        while index < scalars.count, scalars[index] != "\n" { advance() }
      } else {
        return
      }
    }
  }

  private func nextIsNumberOrInf() -> Bool {
    guard index + 1 < scalars.count else { return false }
    return ("0"..."9").contains(scalars[index + 1]) || scalars[index + 1] == "i"
  }

  private mutating func readNumber(_ location: SourceLocation) -> IRToken {
    var text = ""
    if scalars[index] == "-" {
      text = "-"
      advance()
      if index < scalars.count, scalars[index] == "i" {
        text += read { IRLexer.isIdentifierStart($0) }
        return IRToken(kind: .float, text: text, location: span(location))
      }
    }
    text += read { ("0"..."9").contains($0) }
    var isFloat = false
    if index + 1 < scalars.count, scalars[index] == ".", ("0"..."9").contains(scalars[index + 1]) {
      isFloat = true
      advance()
      text += "." + read { ("0"..."9").contains($0) }
    }
    if index < scalars.count, scalars[index] == "e" || scalars[index] == "E" {
      isFloat = true
      text += "e"
      advance()
      if index < scalars.count, scalars[index] == "-" || scalars[index] == "+" {
        text.unicodeScalars.append(scalars[index])
        advance()
      }
      text += read { ("0"..."9").contains($0) }
    }
    return IRToken(kind: isFloat ? .float : .integer, text: text, location: span(location))
  }

  private mutating func readString() -> String? {
    advance()  // the opening quote
    var text = ""
    while index < scalars.count {
      let scalar = scalars[index]
      if scalar == "\n" { return nil }
      advance()
      if scalar == "\"" { return text }
      if scalar == "\\", index < scalars.count {
        let escaped = scalars[index]
        advance()
        switch escaped {
        case "n": text += "\n"
        case "t": text += "\t"
        default: text.unicodeScalars.append(escaped)
        }
      } else {
        text.unicodeScalars.append(scalar)
      }
    }
    return nil
  }

  private static func isIdentifierStart(_ scalar: Unicode.Scalar) -> Bool {
    ("a"..."z").contains(scalar) || ("A"..."Z").contains(scalar) || scalar == "_"
  }

  private static func isNameCharacter(_ scalar: Unicode.Scalar) -> Bool {
    isIdentifierStart(scalar) || ("0"..."9").contains(scalar) || scalar == "."
  }
}
