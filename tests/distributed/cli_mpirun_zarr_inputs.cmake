# .zarr inputs under mpirun: each rank reads only the chunk rows under its planes
# (read_image_slab -> zarr::Store::read_planes). The fixed and moving images are converted to
# OME-Zarr with small chunks (so that slab boundaries fall inside chunks), then
# `mpirun -np NP gigareg register` on the .zarr pair must write the same bytes as one process on
# the .nii.gz pair (the .zarr holds the geometry and values ITK read from the .nii.gz exactly).
#   cmake -DMPIEXEC=... -DNP_FLAG=-n -DNP=3 "-DMPI_FLAGS=..." -DCLI=.../gigareg
#         -DDATA=.../shared/data -DWORK=dir -P cli_mpirun_zarr_inputs.cmake
foreach(v MPIEXEC NP_FLAG NP CLI DATA WORK)
  if(NOT DEFINED ${v})
    message(FATAL_ERROR "${v} is required")
  endif()
endforeach()
set(fixed_nii "${DATA}/templates/fsl_MNI152_T1_2mm.nii.gz")
set(moving_nii "${DATA}/templates/icbm2009_asym_t1_1mm_cropped.nii.gz")
if(NOT EXISTS "${fixed_nii}" OR NOT EXISTS "${moving_nii}")
  message("gigareg-test-skipped: real data not found under ${DATA}/templates")
  return()
endif()
file(REMOVE_RECURSE "${WORK}")
file(MAKE_DIRECTORY "${WORK}")
foreach(pair "${fixed_nii};${WORK}/fixed.zarr" "${moving_nii};${WORK}/moving.zarr")
  list(GET pair 0 in)
  list(GET pair 1 out)
  execute_process(COMMAND ${CMAKE_COMMAND} -E env GIGAREG_DISTRIBUTED=0
                    ${CLI} convert ${in} ${out} --zarr-chunk 16x24x8
                  RESULT_VARIABLE rc ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "converting ${in} failed: ${err}")
  endif()
endforeach()
function(register_args fixed moving out)
  set(args register -d 3 -r [${fixed},${moving},3]
    -t Affine[0.1] -m MI[${fixed},${moving},1,32] -c [8x4,1e-6,10] -f 2x1 -s 1x0vox
    -t Greedy[0.25,2,1] -m CC[${fixed},${moving},1,2] -c [4x2,1e-6,10] -f 2x1 -s 1x0vox
    --device cpu -v 0 --no-qc -o [${out}/,${out}/warped.nii.gz] PARENT_SCOPE)
endfunction()
register_args(${fixed_nii} ${moving_nii} ${WORK}/one)
execute_process(COMMAND ${CMAKE_COMMAND} -E env GIGAREG_DISTRIBUTED=0 OMP_NUM_THREADS=2 ${CLI} ${args}
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err TIMEOUT 300)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "the single-process run failed (${rc}):\n${out}\n${err}")
endif()
register_args(${WORK}/fixed.zarr ${WORK}/moving.zarr ${WORK}/np${NP})
execute_process(COMMAND ${MPIEXEC} ${NP_FLAG} ${NP} ${MPI_FLAGS} -x OMP_NUM_THREADS=1 ${CLI} ${args}
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err TIMEOUT 300)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "mpirun -np ${NP} on the .zarr inputs failed (${rc}):\n${out}\n${err}")
endif()
include(${CMAKE_CURRENT_LIST_DIR}/compare_outputs.cmake)
expect_same_files("${WORK}/one" "${WORK}/np${NP}" "mpirun -np ${NP} on .zarr inputs"
                  "0GenericAffine.mat;1Warp.nii.gz;1InverseWarp.nii.gz;warped.nii.gz")
message(STATUS "mpirun -np ${NP} on .zarr inputs: every output identical to one process on .nii.gz")
