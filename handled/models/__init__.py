"""All models, one module per schema; ``ALL_MODELS`` is what the drift check compares."""

from handled.models import config, customer, reference, workspace
from handled.models.config import (AuditLog, BackupRun, ExportRun, ImportRun, LoginThrottle, PendingInvalidation,
                                    Permission, Role,
                                   RolePermission, Session, TransformationRun, User, UserRole)
from handled.models.customer import Facility, FacilityOrganization, Organization
from handled.models.reference import Carrier, DeliveryMatrix, GroundDays, Service, Zip3Reference
from handled.models.workspace import (GazZcta, RunLedgerEntry, UpsGroundServiceZip5, UpsZone,
                                      Usps3dBaseService, UsZip)

PRIMARY_MODELS = [User, Session, Role, Permission, RolePermission, UserRole, AuditLog, LoginThrottle,
                  ImportRun, TransformationRun, ExportRun, BackupRun, PendingInvalidation,
                  Organization, Facility, FacilityOrganization]
DATA_MODELS = [UsZip, GazZcta, UpsZone, UpsGroundServiceZip5, Usps3dBaseService, RunLedgerEntry,
               Carrier, Service, Zip3Reference, DeliveryMatrix, GroundDays]
ALL_MODELS = PRIMARY_MODELS + DATA_MODELS

SCHEMAS = {"primary": ("config", "customer"), "data": ("workspace", "reference")}

__all__ = [m.__name__ for m in ALL_MODELS] + [
    "ALL_MODELS", "PRIMARY_MODELS", "DATA_MODELS", "SCHEMAS",
    "config", "customer", "workspace", "reference"]
