/* Per-kernel timing of a model's forward: includes the generated model.c (its kernels are static) and times
   each kernel call of lamina_run_forward in place, in order, minimum and median over many calls, then the
   whole lamina_forward. make.py writes plan.inc, calls.inc and names.inc from model.c and a build.sh.
   Usage: ./harness BATCH THREADS RUNS INPUT_PER_SAMPLE OUTPUT_PER_SAMPLE (one f32 input and one f32 output,
   as LeNet-5: 784 and 10). Weights and inputs are fixed patterns, not random, so runs compare. */
#define _GNU_SOURCE
#include <time.h>
#include <stdio.h>
#include "model.c"
/* -DHARNESS_WARM: each kernel runs once untimed before its timed call (make.py's docstring). */
#ifdef HARNESS_WARM
#define WARM(call) ((void)(call))
#else
#define WARM(call) ((void)0)
#endif
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+1e-9*t.tv_nsec;}
static int cmp(const void*a,const void*b){double x=*(double*)a,y=*(double*)b;return x<y?-1:x>y;}
int harness_main(int argc,char**argv){
  if(argc<6){fprintf(stderr,"usage: harness BATCH THREADS RUNS INPUT_PER_SAMPLE OUTPUT_PER_SAMPLE\n");return 2;}
  int batch=atoi(argv[1]), threads=atoi(argv[2]), runs=atoi(argv[3]), per_in=atoi(argv[4]), per_out=atoi(argv[5]);
  lamina_context* ctx=lamina_create(threads);
  for(int64_t i=0;i<LAMINA_PARAMS_BYTES/4;i++) ((float*)ctx->params)[i]=(float)((i*7919)%1000)/1000.0f-0.5f;
  /* The model's own weights when make.py was given them (the pattern above makes batch norms' outputs NaN). */
  FILE* weights=fopen("params.bin","rb");
  if(weights){ if(fread(ctx->params,1,LAMINA_PARAMS_BYTES,weights)!=(size_t)LAMINA_PARAMS_BYTES) fprintf(stderr,"params.bin: short read\n"); fclose(weights); }
  int64_t dims[1]={batch}; const int64_t dim_batch=batch; int status=0; (void)status;
  float* x=malloc(sizeof(float)*batch*per_in); for(int i=0;i<batch*per_in;i++) x[i]=(float)((i*31)%97)/97.0f;
  float* y=malloc(sizeof(float)*batch*per_out);
  const void* inputs[2]={x,NULL}; void* outputs[1]={y};
  lamina_forward(ctx,dims,inputs,outputs);
  int64_t nans=0; for(int64_t i=0;i<(int64_t)batch*per_out;i++) nans+=y[i]!=y[i];
  if(nans) fprintf(stderr,"note: %lld of %lld outputs are NaN (the pattern's weights: pass make.py the weights file)\n",(long long)nans,(long long)batch*per_out);
  #include "sizes.inc" /* NK kernel calls, NOFFSETS arena offsets: written by make.py */
  int64_t offsets[NOFFSETS]; /* recompute the plan as the entry point does: copy its code */
  #include "plan.inc"
  unsigned char* const arena=ctx->arena;
  double* t[NK]; for(int k=0;k<NK;k++) t[k]=malloc(sizeof(double)*runs);
  double* tf=malloc(sizeof(double)*runs);
  for(int r=0;r<runs;r++){
    int k=0; double a=now(), b;
    #include "calls.inc"
    a=now(); lamina_forward(ctx,dims,inputs,outputs); tf[r]=now()-a;
  }
  const char* names[NK + 1]={
  #include "names.inc"
  };
  int nk=NK;
  double summin=0;
  for(int k=0;k<nk;k++){qsort(t[k],runs,sizeof(double),cmp); printf("%-22s min %8.2f us  median %8.2f us\n",names[k],t[k][0]*1e6,t[k][runs/2]*1e6); summin+=t[k][0];}
  qsort(tf,runs,sizeof(double),cmp);
  printf("%-22s min %8.2f us  median %8.2f us   (sum of kernel mins %.2f)\n","forward",tf[0]*1e6,tf[runs/2]*1e6,summin*1e6);
  printf("check %g %g\n", y[0], y[batch*per_out-1]);
  /* Everything freed, so a build with -fsanitize=address reports the runtime's leaks, not the harness's. */
  for(int k=0;k<NK;k++) free(t[k]);
  free(tf); free(x); free(y);
  lamina_destroy(ctx);
  return 0;
}
