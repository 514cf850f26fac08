"""XLA:CPU compile options the benchmark scripts compare, as per-compilation option dicts
(the names of ``XLA_FLAGS``; ``bench.StepTimer(compiler_options=...)``).

YNNPACK library fusions: jaxlib 0.10.2's default (read off its compiled HLO) hands dots,
convolutions and reductions to YNNPACK; the variants drop all of them, drop the
reductions, or add element-wise fusions.
"""

YNN = "xla_cpu_experimental_ynn_fusion_type"
YNN_DEFAULT = ("LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,LIBRARY_FUSION_TYPE_INDIVIDUAL_CONVOLUTION,"
               "LIBRARY_FUSION_TYPE_REDUCE")
YNN_OFF = {YNN: ""}  # XLA's own conv/dot/reduce emitters
YNN_NO_REDUCE = {YNN: YNN_DEFAULT.rsplit(",", 1)[0]}
YNN_ELTWISE = {YNN: YNN_DEFAULT + ",LIBRARY_FUSION_TYPE_ELTWISE"}
