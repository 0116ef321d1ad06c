import time, statistics, torch
from engine.core.jobs import Job, Request
from engine.priors.catalog import load_model
torch.set_num_threads(1)
prior = load_model("vp")
prior.network = lambda x, t: torch.zeros_like(x)
def job(): Job(Request(method="ddim@vp", params={"nfe":50}, n=4)).run()
def start(): Job(Request(method="ddim@vp", params={"nfe":50}, n=4))
for f in (job, start):
    ts=[]
    for r in range(15):
        t=time.perf_counter(); f(); ts.append(time.perf_counter()-t)
    print(f.__name__, "median ms", 1e3*statistics.median(ts))
import cProfile, pstats
cProfile.run('for _ in range(5): job()', '/tmp/prof')
p=pstats.Stats('/tmp/prof'); p.sort_stats('tottime').print_stats(22)
