#!/usr/bin/env python3
"""Per-kernel timing of a compiled model's forward, from its generated C.

  lamina compile examples/bench/lenet5.lam -o /tmp/l.so --emit-c /tmp/lenet_c
  mkdir /tmp/kt && cd /tmp/kt && cp tools/kernel_times/harness.c tools/kernel_times/main.c .
  python3 tools/kernel_times/make.py /tmp/lenet_c [weights.safetensors] && sh build.sh
  ./harness 1 1 5000 784 10     # batch, threads, runs, input and output elements per sample

make.py copies the emitted runtime files, extracts the forward's memory plan (plan.inc) and its kernel
calls (calls.inc, each timed; names.inc), and writes build.sh: the library's own compiler calls with
harness.c (which includes model.c) in place of model.c and main.c linked in. Run it in the directory
holding harness.c and main.c. For comparing kernels (two builds, alternating runs), not a benchmark of record.

Built with `-DHARNESS_WARM` (add it to harness.c's line in build.sh), the harness calls each kernel once
untimed right before its timed call, with the same operands: the timed call then finds its inputs and
outputs where its own threads left them. The difference from the plain build is what the kernel pays for
data last touched by another kernel (another thread's cache, another split); BENCHMARKS.md, session 25.

Without a weights file the harness fills the parameters and state with a pattern in [-0.5, 0.5): a batch
norm's running variance is then negative in about half its channels, and every activation after it is NaN.
Convolutions and GEMMs take the same time on NaNs; pools and anything that branches or selects on values do
not. Given the model's weights (`lamina import ... --weights`), make.py writes them as params.bin in the
context's layout (the signature's params then states, at lamina_param_offsets and lamina_state_offsets), and
the harness loads that instead.
"""
import re,sys,os,shutil
src=sys.argv[1]  # emitted C dir
m=open(os.path.join(src,'model.c')).read()
fwd=m[m.index('static LAMINA_ENTRY_POINT int lamina_run_forward'):]
fwd=fwd[:fwd.index('\n}\n')]
plan=fwd[fwd.index('  {  /* layout'):fwd.index('  int status = lamina_ensure_arena')]
plan=plan.replace('return lamina_fail','return 1+0*lamina_fail').replace('arena_total = layout_total;','')
# Values of parameters alone (the `if (kept_stale)` block) are computed by the first lamina_forward and
# kept: the harness reads them from the context's buffer and times only the kernels of every call.
kept=re.search(r'unsigned char\* const kept = \(unsigned char\*\)lamina_derived\(ctx, (\d+), (\d+), &kept_stale\);',fwd)
if kept:
  plan+='  int kept_stale; unsigned char* const kept = (unsigned char*)lamina_derived(ctx, %s, %s, &kept_stale); (void)kept_stale;\n'%kept.groups()
open('plan.inc','w').write(plan)
calls=re.findall(r'^  status = (k\d+_\w+)\((.*?)\);  /\* (.*?) \*/',fwd,re.M)
with open('calls.inc','w') as f:
  for name,args,node in calls:
    args=args.replace('(float*)outputs[0]','y').replace('(const float*)inputs[0]','x')
    f.write('  WARM(%s(%s)); b=now(); %s(%s); t[k++][r]=now()-b;\n'%(name,args,name,args))
open('names.inc','w').write(''.join('"%s",\n'%n for n,_,_ in calls)+'NULL\n')
# The arrays' sizes: one timing row per call, and the entry point's own `offsets` array's (the plan ends with
# `memcpy(offsets, layout_offsets, sizeof offsets)`, which reads past `layout_offsets` if ours is larger).
declared=re.search(r'^  int64_t offsets\[(\d+)\];',fwd,re.M)
used=[int(i) for i in re.findall(r'(?<!\w)offsets\[(\d+)\]',plan)]
offsets=int(declared.group(1)) if declared else max(used,default=0)+1
open('sizes.inc','w').write('#define NK %d\n#define NOFFSETS %d\n'%(max(len(calls),1),offsets))
for fn in os.listdir(src):
  if fn!='model.c' and (fn.endswith('.h') or fn.endswith('.c')): shutil.copy(os.path.join(src,fn),fn)
shutil.copy(os.path.join(src,'model.c'),'model.c')
b=open(os.path.join(src,'build.sh')).read()
b=b.replace('-c model.c -o unit0.o','-I. -c harness.c -o unit0.o').replace('-shared -fPIC','-fPIC main.c').replace('-o libmodel.so','-o harness')
open('build.sh','w').write(b)

if len(sys.argv)>2:
  import json,struct
  sig=re.search(r'signature = "((?:[^"\\]|\\.)*)"',m).group(1)
  sig=re.sub(r'\\(\d{3})',lambda x: chr(int(x.group(1),8)),sig).replace('\\\\','\\')
  signature=json.loads(sig)
  def offsets(name):
    found=re.search(r'static const int64_t %s\[\d+\] = \{([^}]*)\}'%name,m)
    return [int(v) for v in found.group(1).split(',')] if found else []
  total=int(re.search(r'#define LAMINA_PARAMS_BYTES (\d+)',m).group(1))
  with open(sys.argv[2],'rb') as f:
    size=struct.unpack('<Q',f.read(8))[0]; header=json.loads(f.read(size)); data=f.read()
  blob=bytearray(total)
  for entries,places in ((signature['params'],offsets('lamina_param_offsets')),(signature.get('states',[]),offsets('lamina_state_offsets'))):
    for entry,place in zip(entries,places):
      if entry['name'] not in header: continue  # state the weights file does not hold (a dropout's seed)
      begin,end=header[entry['name']]['data_offsets']
      blob[place:place+end-begin]=data[begin:end]
  open('params.bin','wb').write(blob)
