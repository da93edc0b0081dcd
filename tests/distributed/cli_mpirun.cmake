# `mpirun -np NP gigareg register ...` against the same command in one process: every output file
# (the affine .mat, the warp and inverse warp, the warped and inverse-warped images, the QC
# picture: each made from every rank's planes) byte for byte identical.
#   cmake -DMPIEXEC=... -DNP_FLAG=-n -DNPS=2,3 "-DMPI_FLAGS=..." -DCLI=.../gigareg
#         -DDATA=.../shared/data -DWORK=dir -P cli_mpirun.cmake
foreach(v MPIEXEC NP_FLAG NPS CLI DATA WORK)
  if(NOT DEFINED ${v})
    message(FATAL_ERROR "${v} is required")
  endif()
endforeach()
set(fixed "${DATA}/templates/fsl_MNI152_T1_2mm.nii.gz")
set(moving "${DATA}/templates/icbm2009_asym_t1_1mm_cropped.nii.gz")
if(NOT EXISTS "${fixed}" OR NOT EXISTS "${moving}")
  message("gigareg-test-skipped: real data not found under ${DATA}/templates")
  return()
endif()
include(${CMAKE_CURRENT_LIST_DIR}/compare_outputs.cmake)
string(REPLACE "," ";" NPS "${NPS}")  # the process counts, comma separated
file(REMOVE_RECURSE "${WORK}")
file(MAKE_DIRECTORY "${WORK}")
# Moments, affine (MI) and greedy (CC), two levels each, as a user would write it.
set(args register -d 3 -r [${fixed},${moving},3]
  -t Affine[0.1] -m MI[${fixed},${moving},1,32] -c [15x8,1e-6,10] -f 2x1 -s 1x0vox
  -t Greedy[0.25,2,1] -m CC[${fixed},${moving},1,2] -c [8x4,1e-6,10] -f 2x1 -s 1x0vox
  --device cpu -v 0)
# inverse.nii.gz: the fixed image on the moving grid (here flipped and finer), each rank on its
# planes of the moving grid.
set(files 0GenericAffine.mat 1Warp.nii.gz 1InverseWarp.nii.gz warped.nii.gz inverse.nii.gz QC.png)

execute_process(COMMAND ${CMAKE_COMMAND} -E env GIGAREG_DISTRIBUTED=0 OMP_NUM_THREADS=2
                  ${CLI} ${args} -o [${WORK}/one/,${WORK}/one/warped.nii.gz,${WORK}/one/inverse.nii.gz]
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err TIMEOUT 300)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "the single-process run failed (${rc}):\n${out}\n${err}")
endif()
foreach(np ${NPS})
  execute_process(COMMAND ${MPIEXEC} ${NP_FLAG} ${np} ${MPI_FLAGS} -x OMP_NUM_THREADS=1
                    ${CLI} ${args} -o [${WORK}/np${np}/,${WORK}/np${np}/warped.nii.gz,${WORK}/np${np}/inverse.nii.gz]
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err TIMEOUT 300)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "mpirun -np ${np} failed (${rc}):\n${out}\n${err}")
  endif()
  expect_same_files("${WORK}/one" "${WORK}/np${np}" "mpirun -np ${np}" "${files}")
  message(STATUS "mpirun -np ${np}: ${files} identical to one process")
endforeach()
