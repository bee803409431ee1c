import Lamina

/// One libFuzzer input: the bytes of a model file. Errors are expected; a crash, a hang or a
/// sanitizer report is a bug.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzModelSource(_ start: UnsafeRawPointer?, _ count: Int) -> CInt {
  let bytes = UnsafeRawBufferPointer(start: start, count: count)
  // Invalid UTF-8 is refused before the lexer by `Model(contentsOf:)`; decoding with replacement
  // characters still lets the fuzzer reach the lexer with the bytes it can.
  let text = String(decoding: bytes, as: UTF8.self)
  // Model.frontend reads text whose first line starts with `graph` as IR, so one target covers both.
  let source = SourceFile(path: "fuzz.lam", text: text)
  do {
    let model = try Model(source: source)
    _ = DiagnosticRenderer(sources: [model.source]).render(model.warnings)
    _ = model.ir(locations: true)
    _ = try model.generateC()
    if !model.graph.trainSteps.isEmpty {
      let training = try Model(source: source, pipeline: Pipeline.training)
      _ = try training.generateC()
    }
  } catch let error as CompileError {
    _ = error.rendered
  } catch {
    _ = "\(error)"
  }
  return 0
}
