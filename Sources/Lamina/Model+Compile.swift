import Foundation
import LaminaCodegenC
import LaminaIR
import LaminaPasses
import LaminaRuntime
import LaminaSupport

/// How to turn a model into a shared library.
public struct CompileOptions: Sendable {
  /// The C compiler (`--cc`); nil: `LAMINA_CC`, then cc, clang, gcc.
  public var compiler: String?
  /// Flags replacing `CCompiler.defaultFlags`.
  public var flags: [String]?
  /// Reuse and fill the library cache (`LAMINA_CACHE_DIR`); off: compile into a temporary folder.
  public var useCache = true
  public var cacheDirectory: String?
  /// Threads of the model's pool; 0: one per core (or `LAMINA_NUM_THREADS`).
  public var threads = 0
  /// The passes run on a copy of the graph before C generation (`Pipeline.codegen` by default;
  /// `--disable-pass fusion` removes one).
  public var codegenPasses: [any GraphPass] = Pipeline.codegen

  public init() {}
}

/// A model compiled to C and loaded, with the steps it took.
public struct Compilation: Sendable {
  public var generated: GeneratedModel
  public var libraryPath: String
  /// False when the library came from the cache.
  public var compiledNow: Bool
  public var codegenSeconds: Double
  public var compileSeconds: Double
}

extension Model {
  /// Runs the backend passes (fusion, memory planning) on a copy of `graph`.
  public static func lower(_ graph: Graph, passes: [any GraphPass]) throws -> Graph {
    var lowered = graph
    _ = try PassRunner(passes: passes).run(&lowered)
    return lowered
  }

  /// Generates C for the model without compiling it.
  public func generateC(passes: [any GraphPass] = Pipeline.codegen) throws -> GeneratedModel {
    do {
      return try CodeGenerator.generate(try Model.lower(graph, passes: passes))
    } catch let diagnostic as Diagnostic {
      throw CompileError(diagnostics: [diagnostic], source: source)
    }
  }

  /// Generates C, compiles it (or finds it in the cache) and returns the library's path.
  public func buildLibrary(options: CompileOptions = CompileOptions()) throws -> Compilation {
    let start = DispatchTime.now().uptimeNanoseconds
    let generated = try generateC(passes: options.codegenPasses)
    let generatedAt = DispatchTime.now().uptimeNanoseconds
    let compiler = try CCompiler.find(explicitPath: options.compiler, flags: options.flags)
    let cache: LibraryCache
    if options.useCache {
      cache = LibraryCache(directory: options.cacheDirectory ?? LibraryCache.defaultDirectory())
    } else {
      cache = LibraryCache(
        directory: FileManager.default.temporaryDirectory.appendingPathComponent(
          "lamina-\(UUID().uuidString)"
        ).path)
    }
    let (path, compiledNow) = try cache.library(
      for: generated.source, runtimeSource: generated.runtimeSource, compiler: compiler)
    let end = DispatchTime.now().uptimeNanoseconds
    return Compilation(
      generated: generated, libraryPath: path, compiledNow: compiledNow,
      codegenSeconds: Double(generatedAt - start) / 1e9,
      compileSeconds: Double(end - generatedAt) / 1e9)
  }

  /// Compiles a graph that did not come from a model file (a transformed copy, say) and loads it.
  public static func compile(graph: Graph, options: CompileOptions = CompileOptions()) throws
    -> CompiledModel
  {
    let generated = try CodeGenerator.generate(try lower(graph, passes: options.codegenPasses))
    let compiler = try CCompiler.find(explicitPath: options.compiler, flags: options.flags)
    let cache = LibraryCache(directory: options.cacheDirectory ?? LibraryCache.defaultDirectory())
    let (path, _) = try cache.library(
      for: generated.source, runtimeSource: generated.runtimeSource, compiler: compiler)
    return try CompiledModel(libraryPath: path, threads: options.threads)
  }

  /// Compiles the model and loads it, with its parameters set to `parameters` when given.
  public func compile(
    options: CompileOptions = CompileOptions(), parameters: [String: Tensor]? = nil
  ) throws
    -> CompiledModel
  {
    let compilation = try buildLibrary(options: options)
    let compiled = try CompiledModel(libraryPath: compilation.libraryPath, threads: options.threads)
    // The cache is keyed by the source, so this holds unless the cache was tampered with.
    guard compiled.signature == compilation.generated.signature else {
      throw RunError(
        "\(compilation.libraryPath) does not implement model \(graph.name)'s signature; clear the cache"
      )
    }
    if let parameters { try compiled.setParameters(parameters) }
    return compiled
  }
}
