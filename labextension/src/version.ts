/**
 * The widget module name and version the Python classes ask for (`_model_module`,
 * `_model_module_version`); kept equal to package.json's version by a unit test.
 */

export const MODULE_NAME = 'nbws';
export const MODULE_VERSION = '0.1.0';
