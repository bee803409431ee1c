import LaminaIR
import LaminaSupport

/// The one way a kernel shares its outermost loop with the thread pool.
///
/// It writes, before the kernel, a job struct holding the kernel's arguments, a `_range` function
/// running rows (or elements) `begin..<end`, and a `_task` function running one task's chunk; in the
/// kernel, the code that fills the job and runs the range on the calling thread (one task) or
/// across the pool. The task count comes at run time from the work (`lamina_task_count`); chunks
/// are rounded up to `chunkAlignment` (16 elements: whole cache lines, so threads never write the
/// same line). With `taskSlots`, each task also gets its index (`slot`) for a private slot of
/// partial results, and runs even when its chunk is empty (to clear that slot).
struct ParallelLoop {
  /// A pointer argument of the kernel (`const float* in0`, `float* out`).
  struct Argument {
    var elementType: String
    var name: String
    var isWritten: Bool
  }

  /// The name of the kernel, or the placeholder standing for it (`@KERNEL@`).
  var kernel: String
  var arguments: [Argument]
  /// Declarations of the symbolic dimensions the range reads (`const int64_t dim_batch = dims[0];`).
  var dimensionPrologue: [String]
  /// The loop's extent and the work (elements) that sets the task count, as C expressions.
  var extent: String
  var work: String
  var chunkAlignment: Int
  var taskSlots = false
  /// More fields of the job struct (`double* partials;`).
  var extraFields: [String] = []

  /// The loop a schedule's thread split describes.
  init(
    kernel: String, arguments: [Argument], dimensionPrologue: [String],
    split: KernelSchedule.ThreadSplit, extraFields: [String] = []
  ) {
    self.kernel = kernel
    self.arguments = arguments
    self.dimensionPrologue = dimensionPrologue
    self.extraFields = extraFields
    switch split {
    case .chunks(let extent, let work, let chunkAlignment, let taskSlots):
      self.extent = cProduct(extent)
      self.work = cProduct(work)
      self.chunkAlignment = chunkAlignment
      self.taskSlots = taskSlots
    case .producer:
      preconditionFailure("a producer's kernel splits its own work")
    }
  }

  init(
    kernel: String, arguments: [Argument], dimensionPrologue: [String], extent: String,
    work: String, chunkAlignment: Int
  ) {
    self.kernel = kernel
    self.arguments = arguments
    self.dimensionPrologue = dimensionPrologue
    self.extent = extent
    self.work = work
    self.chunkAlignment = chunkAlignment
  }

  /// The job struct, `_range` (with `rangeBody` after the arguments are unpacked) and `_task`.
  func declarations(rangeBody: CWriter, into prelude: inout CWriter) {
    prelude.line("/* The arguments of \(kernel), shared by the threads running it. */")
    prelude.line("typedef struct {")
    prelude.line("  const int64_t* dims;")
    for argument in arguments {
      prelude.line(
        "  \(argument.isWritten ? "" : "const ")\(argument.elementType)* \(argument.name);")
    }
    for field in ["int64_t extent;"] + extraFields + ["int64_t tasks;"] {
      prelude.line("  \(field)")
    }
    prelude.line("} \(kernel)_job;")
    prelude.line()
    prelude.line("/* Rows (or elements) begin..<end of \(kernel)'s outermost loop. */")
    let slotParameter = taskSlots ? ", int64_t slot" : ""
    prelude.block(
      "static void \(kernel)_range(const \(kernel)_job* job, int64_t begin, int64_t end\(slotParameter))"
    ) { body in
      // Not restrict: a result may take an operand's buffer (in place, or a weight's update
      // written over the weight in a matmul epilogue); each element is read before it is written.
      body.line("const int64_t* dims = job->dims;")
      body.line("(void)dims;")
      for argument in arguments {
        body.line(
          "\(argument.isWritten ? "" : "const ")\(argument.elementType)* \(argument.name) = job->\(argument.name);"
        )
      }
      for line in dimensionPrologue { body.line(line) }
      body.nest(rangeBody)
    }
    prelude.line()
    prelude.block("static void \(kernel)_task(void* argument, int64_t task, int thread)") { body in
      body.line("const \(kernel)_job* job = (const \(kernel)_job*)argument;")
      body.line("(void)thread;")
      body.line("const int64_t extent = job->tasks > 0 ? job->extent : 0;")
      body.line(
        "const int64_t chunk = ((extent + job->tasks - 1) / job->tasks + \(chunkAlignment - 1)) / \(chunkAlignment) * \(chunkAlignment);"
      )
      body.line("const int64_t begin = task * chunk;")
      body.line("const int64_t end = begin + chunk < extent ? begin + chunk : extent;")
      if taskSlots {
        // Every task clears its slot of partial sums, even an empty one.
        body.line("\(kernel)_range(job, begin < end ? begin : end, end, task);")
      } else {
        body.line("if (begin < end) \(kernel)_range(job, begin, end);")
      }
    }
    prelude.line()
  }

  /// In the kernel (after its dimension prologue): fill the job, then run the range on this thread
  /// or across the pool. `beforeRun` may fill extra fields (`job.partials`).
  func dispatch(into body: inout CWriter, beforeRun: (inout CWriter) -> Void = { _ in }) {
    let pointers = arguments.map(\.name)
    let fields = ["dims"] + pointers + ["extent", "tasks"]
    let values = ["dims"] + pointers + [extent, "lamina_task_count(ctx, (__int128)\(work))"]
    body.line(
      "\(kernel)_job job = {\(zip(fields, values).map { ".\($0) = \($1)" }.joined(separator: ", "))};"
    )
    beforeRun(&body)
    body.block("if (job.tasks == 1)") { serial in
      serial.line("\(kernel)_range(&job, 0, job.extent\(taskSlots ? ", 0" : ""));")
    }
    body.block("else") { parallel in
      parallel.line("lamina_pool_run(ctx->pool, job.tasks, \(kernel)_task, &job);")
    }
  }
}
