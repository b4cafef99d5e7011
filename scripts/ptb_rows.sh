# The rows of the char-level PTB studies (sourced by study_table1.sh and study_lr.sh):
# row name -> config overrides of configs/ptb_char_study.py.
# shellcheck disable=SC2034  # ROWS is read by the scripts that source this file
declare -A ROWS=(
  [lstm]="--config.model.variant=lstm"
  [weightnorm]="--config.model.variant=weightnorm"
  [layernorm]="--config.model.variant=layernorm"
  [batchnorm]="--config.model.variant=batchnorm"
  [normprop_paper]="--config.model.variant=normprop --config.model.compensation=paper"
  [normprop_released]="--config.model.variant=normprop --config.model.compensation=released"
  [normprop_critical]="--config.model.variant=normprop --config.model.gamma_init=critical"
  [normprop_paper_expdecay]="--config.model.variant=normprop --config.opt.schedule=exponential"
  # beyond the paper: the simulated calibration at the critical gamma_h (issue 19)
  [normprop_critical_simulated]="--config.model.variant=normprop --config.model.gamma_init=critical --config.model.variance_method=simulated"
)
