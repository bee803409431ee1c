import LaminaIR
import LaminaSupport

/// Parses `.lam` tokens into a `SourceProgram`.
///
/// Recursive descent with one token of lookahead. After an error it skips to the next statement
/// (a keyword at the start of a line) and goes on, so every syntax error in a file is reported.
public struct Parser {
  private var tokens: [Token]
  private var position = 0
  /// How deeply the expression being parsed nests; bounded so neither the parser nor lowering, both
  /// recursive, can overflow the stack.
  private var depth = 0
  public private(set) var diagnostics = DiagnosticBag()

  static let maximumDepth = 100

  static let statementKeywords: Set<String> = [
    "input", "param", "let", "output", "loss", "train", "freeze", "return",
  ]

  /// Lexes and parses a whole file. Diagnostics from both stages are in the returned bag.
  public static func parse(source: SourceFile) -> (SourceProgram, DiagnosticBag) {
    var lexer = Lexer(text: source.text, path: source.path)
    let tokens = lexer.tokenize()
    var parser = Parser(tokens: tokens)
    var diagnostics = lexer.diagnostics
    let program = parser.parseProgram()
    // In a file of binary garbage every syntax error would be a follow-up of the bad characters.
    if !lexer.looksBinary {
      // In file order, not lexer errors first.
      let merged = (diagnostics.diagnostics + parser.diagnostics.diagnostics).enumerated().sorted {
        let (a, b) = ($0.element.location, $1.element.location)
        return (a?.line ?? 0, a?.column ?? 0, $0.offset) < (b?.line ?? 0, b?.column ?? 0, $1.offset)
      }
      diagnostics = DiagnosticBag()
      diagnostics.append(contentsOf: merged.map(\.element))
    }
    return (program, diagnostics)
  }

  public init(tokens: [Token]) { self.tokens = tokens }

  // MARK: Token helpers

  private var current: Token { tokens[position] }
  private var previous: Token { tokens[max(0, position - 1)] }

  @discardableResult
  private mutating func advance() -> Token {
    let token = tokens[position]
    if position < tokens.count - 1 { position += 1 }
    return token
  }

  private mutating func acceptSymbol(_ symbol: String) -> Token? {
    current.isSymbol(symbol) ? advance() : nil
  }

  private mutating func expectSymbol(_ symbol: String, _ context: String) throws -> Token {
    if let token = acceptSymbol(symbol) { return token }
    throw unexpected("expected '\(symbol)' \(context)")
  }

  private mutating func expectIdentifier(_ what: String) throws -> Token {
    guard current.kind == .identifier else { throw unexpected("expected \(what)") }
    return advance()
  }

  private func unexpected(_ message: String) -> Diagnostic {
    .error("\(message), found \(current)", at: currentLocation)
  }

  /// Where the current token is; for the end of the file, just after the last token, so the excerpt
  /// shows the line that was cut short rather than an empty one.
  private var currentLocation: SourceLocation {
    guard current.kind == .end, position > 0 else { return current.location }
    var location = previous.location
    location.column += location.length
    location.length = 1
    return location
  }

  /// Reports a syntax error, unless it follows from a token the lexer already reported (between token
  /// `start` and the current one): a malformed number or string is one mistake, not two.
  private mutating func report(_ diagnostic: Diagnostic, since start: Int) {
    let tainted = tokens[min(start, position)...position].contains(where: \.isMalformed)
    if !tainted { diagnostics.append(diagnostic) }
  }

  /// Counts one more level of nesting and rejects expressions too deep to process.
  private mutating func checkDepth() throws {
    guard depth <= Parser.maximumDepth else {
      throw Diagnostic.error(
        "this expression is nested too deeply (more than \(Parser.maximumDepth) levels)",
        at: currentLocation,
        help: "split it into several let statements")
    }
  }

  // MARK: Declarations

  mutating func parseProgram() -> SourceProgram {
    var program = SourceProgram()
    while current.kind != .end {
      if current.isWord("model") {
        if let model = parseModel() { program.models.append(model) }
      } else if current.isWord("block") {
        if let block = parseBlock() { program.blocks.append(block) }
      } else {
        report(unexpected("expected 'model' or 'block'"), since: position)
        // Skip to the next declaration.
        repeat {
          advance()
        } while current.kind != .end
          && !(current.startsLine && (current.isWord("model") || current.isWord("block")))
      }
    }
    return program
  }

  private mutating func parseModel() -> ModelDecl? {
    let start = position
    let keyword = advance()
    do {
      let name = try expectIdentifier("a model name after 'model'")
      let open = try expectSymbol("{", "to open the model body")
      let statements = parseBody(opening: open, owner: "model \(name.text)")
      return ModelDecl(
        name: name.text, statements: statements,
        location: keyword.location.extended(to: name.location))
    } catch {
      report(error as! Diagnostic, since: start)
      skipDeclaration()
      return nil
    }
  }

  private mutating func parseBlock() -> BlockDecl? {
    let start = position
    let keyword = advance()
    do {
      let name = try expectIdentifier("a block name after 'block'")
      _ = try expectSymbol("(", "after the block name")
      var parameters: [BlockParameter] = []
      if acceptSymbol(")") == nil {
        repeat {
          let parameterName = try expectIdentifier("a parameter name")
          var kind = BlockParameter.Kind.tensor
          var defaultValue: Expr?
          if acceptSymbol(":") != nil {
            let typeName = try expectIdentifier("a parameter type (Int, Float, Bool, String)")
            guard let parsed = BlockParameter.Kind(rawValue: typeName.text), parsed != .tensor
            else {
              throw Diagnostic.error(
                "unknown parameter type '\(typeName.text)'", at: typeName.location,
                help: "block parameters are tensors (no type) or Int, Float, Bool, String")
            }
            kind = parsed
            if acceptSymbol("=") != nil { defaultValue = try parseExpression() }
          }
          parameters.append(
            BlockParameter(
              name: parameterName.text, kind: kind, defaultValue: defaultValue,
              location: parameterName.location))
        } while acceptSymbol(",") != nil
        _ = try expectSymbol(")", "to close the block's parameters")
      }
      let open = try expectSymbol("{", "to open the block body")
      let statements = parseBody(opening: open, owner: "block \(name.text)")
      return BlockDecl(
        name: name.text, parameters: parameters, statements: statements,
        location: keyword.location.extended(to: name.location))
    } catch {
      report(error as! Diagnostic, since: start)
      skipDeclaration()
      return nil
    }
  }

  private mutating func skipDeclaration() {
    while current.kind != .end {
      if current.startsLine && (current.isWord("model") || current.isWord("block")) { return }
      advance()
    }
  }

  /// Statements up to the closing brace.
  private mutating func parseBody(opening: Token, owner: String) -> [Statement] {
    var statements: [Statement] = []
    while true {
      if acceptSymbol("}") != nil { return statements }
      if current.kind == .end
        || (current.startsLine && (current.isWord("model") || current.isWord("block")))
      {
        report(
          .error(
            "expected '}' to close \(owner), found \(current)", at: currentLocation,
            notes: [Diagnostic.Note("\(owner) opens here", at: opening.location)]),
          since: position)
        return statements
      }
      let start = position
      do {
        statements.append(try parseStatement())
      } catch {
        var diagnostic = error as! Diagnostic
        if current.kind == .end {
          // A statement cut short by the end of the file: one error says both that and the missing '}'.
          diagnostic.notes.append(
            Diagnostic.Note(
              "\(owner) opens here, and the file ends before its '}'", at: opening.location))
          report(diagnostic, since: start)
          return statements
        }
        report(diagnostic, since: start)
        recoverToStatement(from: start)
      }
    }
  }

  /// Skips to the next statement after an error in the one that began at token `start`.
  private mutating func recoverToStatement(from start: Int) {
    // Statements are one per line unless brackets continue them, so the broken statement ends at a
    // line that begins outside brackets (where `lett x = ...` then gets its own error), or at a line
    // that begins with a keyword or `}` in any case. The token the error was found at may be that
    // place (`let y = x +` then `}`); only the statement's own first token is always skipped.
    var brackets = 0
    func count(_ token: Token) {
      if token.isSymbol("(") || token.isSymbol("[") { brackets += 1 }
      if token.isSymbol(")") || token.isSymbol("]") { brackets -= 1 }
    }
    for token in tokens[start..<position] { count(token) }
    if position == start {
      count(current)
      advance()
    }
    while current.kind != .end {
      if current.startsLine
        && (brackets <= 0
          || current.kind == .identifier && Parser.statementKeywords.contains(current.text)
          || current.isSymbol("}") || current.isWord("model") || current.isWord("block"))
      {
        return
      }
      count(current)
      advance()
    }
  }

  // MARK: Statements

  private mutating func parseStatement() throws -> Statement {
    guard current.kind == .identifier, Parser.statementKeywords.contains(current.text) else {
      var help = "statements start with input, param, let, output, loss, train, freeze or return"
      if current.kind == .identifier,
        let suggestion = closestWord(current.text, Parser.statementKeywords)
      {
        help = "did you mean '\(suggestion)'?"
      }
      throw Diagnostic.error(
        "expected a statement, found \(current)", at: current.location, help: help)
    }
    let keyword = advance()
    switch keyword.text {
    case "input":
      let name = try expectIdentifier("an input name")
      _ = try expectSymbol(":", "before the input's type")
      let type = try parseType()
      return .input(name: name.text, type: type, location: name.location)
    case "param":
      let name = try expectIdentifier("a parameter name")
      _ = try expectSymbol(":", "before the parameter's type")
      let type = try parseType()
      let initializer = acceptSymbol("=") != nil ? try parseExpression() : nil
      return .param(name: name.text, type: type, initializer: initializer, location: name.location)
    case "let":
      let name = try expectIdentifier("a name after 'let'")
      _ = try expectSymbol("=", "after the name")
      return .let(name: name.text, value: try parseExpression(), location: name.location)
    case "output":
      let name = try expectIdentifier("an output name")
      let value = acceptSymbol("=") != nil ? try parseExpression() : nil
      return .output(name: name.text, value: value, location: name.location)
    case "loss":
      var name = "loss"
      var location = keyword.location
      if current.kind == .identifier {
        let token = advance()
        name = token.text
        location = token.location
      }
      _ = try expectSymbol("=", "after '\(keyword.text)'")
      return .loss(name: name, value: try parseExpression(), location: location)
    case "train":
      var name: String?
      if current.kind == .identifier, !current.isWord("with") { name = advance().text }
      guard current.isWord("with") else { throw unexpected("expected 'with' before the optimizer") }
      advance()
      let optimizer = try parseExpression()
      return .train(name: name, optimizer: optimizer, location: keyword.location)
    case "freeze":
      return .freeze(pattern: try parseExpression(), location: keyword.location)
    default:
      return .return(value: try parseExpression(), location: keyword.location)
    }
  }

  private mutating func parseType() throws -> TypeExpr {
    let dtype = try expectIdentifier("a type like f32[batch, 64]")
    _ = try expectSymbol("[", "to start the shape (scalars are written f32[])")
    var dims: [DimExpr] = []
    if acceptSymbol("]") == nil {
      repeat {
        let token = advance()
        switch token.kind {
        case .integer: dims.append(.literal(Int(token.text) ?? 0, token.location))
        case .identifier: dims.append(.name(token.text, token.location))
        case .symbol where token.text == "-" && current.kind == .integer:
          // Parsed so lowering can say that sizes must be positive.
          let number = advance()
          dims.append(
            .literal(-(Int(number.text) ?? 0), token.location.extended(to: number.location)))
        default:
          throw Diagnostic.error(
            "expected a dimension (an integer or a name like batch), found \(token)",
            at: token.location)
        }
      } while acceptSymbol(",") != nil
      _ = try expectSymbol("]", "to close the shape")
    }
    return TypeExpr(
      dtype: dtype.text, dims: dims, location: dtype.location.extended(to: previous.location))
  }

  // MARK: Expressions

  /// Lowest precedence: `x |> f(a: 1) |> g`.
  mutating func parseExpression() throws -> Expr {
    var value = try parseAdditive()
    let outerDepth = depth
    defer { depth = outerDepth }
    while acceptSymbol("|>") != nil {
      depth += 1
      try checkDepth()
      let callee = try expectIdentifier("a function or block name after '|>'")
      var arguments = [Argument(label: nil, value: value, location: value.location)]
      var end = callee.location
      if acceptSymbol("(") != nil {
        arguments += try parseArguments()
        end = previous.location
      }
      // Located at the call, not the whole pipeline: `x |> a |> b` has errors of b point at b.
      value = Expr(
        .call(callee: callee.text, calleeLocation: callee.location, arguments: arguments),
        at: callee.location.extended(to: end))
    }
    return value
  }

  private mutating func parseAdditive() throws -> Expr {
    var value = try parseMultiplicative()
    let outerDepth = depth
    defer { depth = outerDepth }
    while current.isSymbol("+") || current.isSymbol("-") {
      depth += 1
      try checkDepth()
      let op = BinaryOperator(rawValue: advance().text)!
      let rhs = try parseMultiplicative()
      value = Expr(.binary(op, value, rhs), at: value.location.extended(to: rhs.location))
    }
    return value
  }

  private mutating func parseMultiplicative() throws -> Expr {
    var value = try parseUnary()
    let outerDepth = depth
    defer { depth = outerDepth }
    while current.isSymbol("*") || current.isSymbol("/") || current.isSymbol("@") {
      depth += 1
      try checkDepth()
      let op = BinaryOperator(rawValue: advance().text)!
      let rhs = try parseUnary()
      value = Expr(.binary(op, value, rhs), at: value.location.extended(to: rhs.location))
    }
    return value
  }

  private mutating func parseUnary() throws -> Expr {
    depth += 1
    defer { depth -= 1 }
    try checkDepth()
    if let minus = acceptSymbol("-") {
      let operand = try parseUnary()
      return Expr(.negate(operand), at: minus.location.extended(to: operand.location))
    }
    return try parsePostfix()
  }

  private mutating func parsePostfix() throws -> Expr {
    var value = try parsePrimary()
    let outerDepth = depth
    defer { depth = outerDepth }
    while current.isSymbol("[") {
      depth += 1
      try checkDepth()
      advance()
      var items: [IndexItem] = []
      repeat { items.append(try parseIndexItem()) } while acceptSymbol(",") != nil
      let close = try expectSymbol("]", "to close the index")
      value = Expr(.index(value, items), at: value.location.extended(to: close.location))
    }
    return value
  }

  private mutating func parseIndexItem() throws -> IndexItem {
    func boundary(_ token: Token) -> Bool {
      token.isSymbol(":") || token.isSymbol(",") || token.isSymbol("]")
    }
    let start = boundary(current) ? nil : try parseAdditive()
    guard acceptSymbol(":") != nil else {
      guard let start else { throw unexpected("expected an index") }
      return .index(start)
    }
    let stop = boundary(current) ? nil : try parseAdditive()
    var step: Expr?
    if acceptSymbol(":") != nil, !(current.isSymbol(",") || current.isSymbol("]")) {
      step = try parseAdditive()
    }
    return .range(start: start, stop: stop, step: step)
  }

  private mutating func parsePrimary() throws -> Expr {
    let token = current
    switch token.kind {
    case .identifier:
      advance()
      if acceptSymbol("(") != nil {
        let arguments = try parseArguments()
        return Expr(
          .call(callee: token.text, calleeLocation: token.location, arguments: arguments),
          at: token.location.extended(to: previous.location))
      }
      return Expr(.name(token.text), at: token.location)
    case .integer:
      advance()
      return Expr(.integer(Int(token.text) ?? 0), at: token.location)
    case .float:
      advance()
      return Expr(.float(Double(token.text) ?? 0), at: token.location)
    case .string:
      advance()
      return Expr(.string(token.text), at: token.location)
    case .symbol where token.text == "(":
      advance()
      let inner = try parseExpression()
      let close = try expectSymbol(")", "to close the parenthesis")
      return Expr(inner.kind, at: token.location.extended(to: close.location))
    case .symbol where token.text == "[":
      advance()
      var elements: [Expr] = []
      if acceptSymbol("]") == nil {
        repeat { elements.append(try parseExpression()) } while acceptSymbol(",") != nil
        _ = try expectSymbol("]", "to close the list")
      }
      return Expr(.list(elements), at: token.location.extended(to: previous.location))
    default:
      throw unexpected("expected an expression")
    }
  }

  /// Arguments after `(`, through the closing `)`.
  private mutating func parseArguments() throws -> [Argument] {
    var arguments: [Argument] = []
    if acceptSymbol(")") != nil { return arguments }
    repeat {
      let start = current
      var label: String?
      if current.kind == .identifier, tokens[min(position + 1, tokens.count - 1)].isSymbol(":") {
        label = advance().text
        advance()
      }
      let value = try parseExpression()
      arguments.append(
        Argument(label: label, value: value, location: start.location.extended(to: value.location)))
    } while acceptSymbol(",") != nil
    _ = try expectSymbol(")", "to close the argument list")
    return arguments
  }

  private func closestWord(_ word: String, _ candidates: Set<String>) -> String? {
    candidates.sorted().min { editDistance(word, $0) < editDistance(word, $1) }
      .flatMap { editDistance(word, $0) <= 2 ? $0 : nil }
  }
}
